#pragma once
// cuda_runtime.h of the CPU emulator (tests/emulator): the seam types, the device builtins, kernel
// launches, and the runtime API (memory, streams, events, graphs, device properties, errors).
#include "strata_emulator/interface.h"
#include "strata_emulator/device.h"
#include "strata_emulator/launch.h"
#include "strata_emulator/runtime_api.h"
