#pragma once
// cub on the CPU emulator: the device-wide algorithms strata uses (see device/).
#include <cub/device/device_radix_sort.cuh>
