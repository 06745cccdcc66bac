// What a CUDA process costs before it holds any data: the steps llama.cpp's CUDA backend goes
// through (context, stream, cuBLAS handle with llama.cpp's 32 MiB workspace on Hopper, a first
// GEMM, a VMM pool mapping, a kernel launch, a CUDA graph), then the per-thread local-memory
// reservation (a kernel with a large stack frame; a larger stack limit), one at a time. After each step the
// program prints one JSON line and waits for a line on stdin, so that the parent (device.py)
// reads the process's device memory from NVML while nothing else changes.
//
// Build: nvcc -O2 -arch=sm_90 baseline.cu -lcublas -L<cuda>/lib64/stubs -lcuda   (or -DNO_VMM
// without -lcuda).

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#ifndef NO_VMM
#include <cuda.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#define CHECK_CUDA(x)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            std::printf("{\"error\":\"%s: %s\"}\n", #x, cudaGetErrorString(e_));               \
            std::exit(1);                                                                      \
        }                                                                                      \
    } while (0)
#define CHECK_CUBLAS(x)                                                                        \
    do {                                                                                       \
        cublasStatus_t s_ = (x);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
            std::printf("{\"error\":\"%s: status %d\"}\n", #x, (int)s_);                      \
            std::exit(1);                                                                      \
        }                                                                                      \
    } while (0)

static bool g_context = false;

// Print the step and wait until the parent has measured.
static void step(const char *name, const char *note = "") {
    size_t free_b = 0, total_b = 0;
    if (g_context) {
        CHECK_CUDA(cudaDeviceSynchronize());
        CHECK_CUDA(cudaMemGetInfo(&free_b, &total_b));
    }
    std::printf("{\"step\":\"%s\",\"cuda_free_bytes\":%zu,\"note\":\"%s\"}\n", name, free_b, note);
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
}

__global__ void fill(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = 0.5f * i;
}

// 1536 bytes of local memory per thread: the array is indexed with run-time values
__global__ void big_frame(float *x, int n, int k) {
    float buf[384];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (int j = 0; j < 384; ++j) buf[(j * k) % 384] = x[(i + j) % n];
    if (i < n) x[i] = buf[(i * k) % 384];
}

int main() {
    step("start");

    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaFree(0));
    g_context = true;
    size_t stack = 0;
    CHECK_CUDA(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    int sms = 0, threads = 0;
    CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CHECK_CUDA(cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, 0));
    std::printf("{\"stack_limit_bytes\":%zu,\"sm_count\":%d,\"max_threads_per_sm\":%d}\n", stack, sms, threads);
    step("context", "cudaSetDevice + cudaFree(0)");

    void *p1 = nullptr, *p2 = nullptr, *p3 = nullptr;
    CHECK_CUDA(cudaMalloc(&p1, 1));
    step("malloc_1B");
    CHECK_CUDA(cudaMalloc(&p2, 2u << 20));
    step("malloc_2MiB");
    CHECK_CUDA(cudaMalloc(&p3, 64u << 20));
    step("malloc_64MiB");
    CHECK_CUDA(cudaFree(p1));
    CHECK_CUDA(cudaFree(p2));
    CHECK_CUDA(cudaFree(p3));
    step("freed");

    cudaStream_t stream;
    CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    step("stream");

    // as ggml_backend_cuda_context::cublas_handle() does
    cublasHandle_t handle;
    CHECK_CUBLAS(cublasCreate(&handle));
    step("cublas_create");
    CHECK_CUBLAS(cublasSetMathMode(handle, CUBLAS_TF32_TENSOR_OP_MATH));
    CHECK_CUBLAS(cublasSetStream(handle, stream));
    step("cublas_set_stream");
    void *workspace = nullptr;
    const size_t ws_size = 32u << 20;
    CHECK_CUDA(cudaMalloc(&workspace, ws_size));
    CHECK_CUBLAS(cublasSetWorkspace(handle, workspace, ws_size));
    step("cublas_workspace_32MiB");

    // a 4096x4096 F16 weight times 512 F16 activations, as llama.cpp's F16 path (cublasGemmEx)
    const int m = 4096, n = 512, k = 4096;
    half *a, *b, *c;
    CHECK_CUDA(cudaMalloc(&a, sizeof(half) * m * k));
    CHECK_CUDA(cudaMalloc(&b, sizeof(half) * k * n));
    CHECK_CUDA(cudaMalloc(&c, sizeof(half) * m * n));
    CHECK_CUDA(cudaMemset(a, 0, sizeof(half) * m * k));
    CHECK_CUDA(cudaMemset(b, 0, sizeof(half) * k * n));
    step("gemm_buffers", "40 MiB of operands");
    const half alpha_h = __float2half(1.0f), beta_h = __float2half(0.0f);
    CHECK_CUBLAS(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha_h, a, CUDA_R_16F, k, b,
                              CUDA_R_16F, k, &beta_h, c, CUDA_R_16F, m, CUBLAS_COMPUTE_16F,
                              CUBLAS_GEMM_DEFAULT_TENSOR_OP));
    step("gemm_f16_compute16f");
    const float alpha_f = 1.0f, beta_f = 0.0f;
    float *cf;
    CHECK_CUDA(cudaMalloc(&cf, sizeof(float) * m * n));
    CHECK_CUBLAS(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha_f, a, CUDA_R_16F, k, b,
                              CUDA_R_16F, k, &beta_f, cf, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT_TENSOR_OP));
    step("gemm_f16_compute32f", "plus an 8 MiB F32 output");

    // a second handle with cuBLAS's own default workspace
    cublasHandle_t handle2;
    CHECK_CUBLAS(cublasCreate(&handle2));
    CHECK_CUBLAS(cublasSetStream(handle2, stream));
    CHECK_CUBLAS(cublasGemmEx(handle2, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha_f, a, CUDA_R_16F, k, b,
                              CUDA_R_16F, k, &beta_f, cf, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT_TENSOR_OP));
    step("cublas2_default_workspace_gemm");

#ifndef NO_VMM
    // ggml_cuda_pool_vmm: reserve 32 GiB of addresses, map physical memory in granularity steps
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran_rec = 0, gran_min = 0;
    cuMemGetAllocationGranularity(&gran_rec, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
    cuMemGetAllocationGranularity(&gran_min, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    std::printf("{\"vmm_granularity_recommended\":%zu,\"vmm_granularity_minimum\":%zu}\n", gran_rec, gran_min);
    CUdeviceptr base = 0;
    cuMemAddressReserve(&base, 1ull << 35, 0, 0, 0);
    step("vmm_reserve_32GiB");
    CUmemGenericAllocationHandle mem;
    if (cuMemCreate(&mem, gran_rec, &prop, 0) == CUDA_SUCCESS) {
        cuMemMap(base, gran_rec, 0, mem, 0);
        cuMemRelease(mem);
        CUmemAccessDesc access = {};
        access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        access.location.id = 0;
        access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        cuMemSetAccess(base, gran_rec, &access, 1);
    }
    step("vmm_map_one_granule");
#endif

    float *x;
    CHECK_CUDA(cudaMalloc(&x, sizeof(float) * (1 << 20)));
    step("malloc_4MiB");
    fill<<<(1 << 20) / 256, 256, 0, stream>>>(x, 1 << 20);
    CHECK_CUDA(cudaGetLastError());
    step("own_kernel");

    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < 64; ++i) {
        fill<<<(1 << 20) / 256, 256, 0, stream>>>(x, 1 << 20);
    }
    CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
    CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    CHECK_CUDA(cudaGraphLaunch(exec, stream));
    step("cuda_graph_64_nodes");

    cudaFuncAttributes attr;
    CHECK_CUDA(cudaFuncGetAttributes(&attr, big_frame));
    std::printf("{\"big_frame_local_bytes\":%zu}\n", attr.localSizeBytes);
    big_frame<<<(1 << 20) / 256, 256, 0, stream>>>(x, 1 << 20, 7);
    CHECK_CUDA(cudaGetLastError());
    step("big_frame_kernel", "a kernel with a 1536-byte stack frame");
    CHECK_CUDA(cudaDeviceSetLimit(cudaLimitStackSize, 4096));
    step("stack_limit_4096");
    return 0;
}
