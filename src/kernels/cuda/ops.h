#pragma once
// Every CUDA op family (the twins of kernels/cpu/*.h), for the dispatcher. Plain C++ headers: no
// CUDA types, so any translation unit of the library may include this.
#include "core/device_cuda.h"
#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/quant_gemm.h"
#include "kernels/cuda/loss.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/optim.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/scan.h"
#include "kernels/cuda/ssd.h"
