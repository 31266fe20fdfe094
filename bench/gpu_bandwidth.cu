// Device memory bandwidth on the GPU the benchmarks run on: the bound that
// scripts/gpu-check.sh divides MoIR's decode bytes per second by. Two kernels
// over buffers far larger than the L2:
//   copy: reads one buffer and writes another (bytes read + written / time);
//   read: sums a buffer into one value per block (bytes read / time), the
//         access pattern of batch-1 decode, which streams its weights once.
// Prints one JSON line. Built on the GPU machine by gpu-check.sh:
//   nvcc -O3 -arch=native bench/gpu_bandwidth.cu -o gpu_bandwidth
//   ./gpu_bandwidth [MiB per buffer, default 2048]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <cuda_runtime.h>

#define CHECK(call)                                                                              \
  do {                                                                                           \
    cudaError_t e = (call);                                                                      \
    if (e != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "gpu_bandwidth: %s: %s\n", #call, cudaGetErrorString(e));             \
      return 1;                                                                                  \
    }                                                                                            \
  } while (0)

__global__ void copyKernel(const float4 *__restrict__ in, float4 *__restrict__ out, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = in[i];
}

__global__ void readKernel(const float4 *__restrict__ in, size_t n, float *partial) {
  float sum = 0.f;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    float4 v = in[i];
    sum += v.x + v.y + v.z + v.w;
  }
  for (int o = 16; o > 0; o >>= 1)
    sum += __shfl_down_sync(0xffffffffu, sum, o);
  __shared__ float warpSums[32];
  if ((threadIdx.x & 31) == 0)
    warpSums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int w = 0; w < (int)(blockDim.x / 32); ++w)
      total += warpSums[w];
    partial[blockIdx.x] = total;
  }
}

__global__ void fillKernel(float4 *out, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    out[i] = make_float4(1.f, 2.f, 3.f, (float)(i & 7));
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2048;
  if (mib == 0) {
    std::fprintf(stderr, "usage: gpu_bandwidth [MiB per buffer]\n");
    return 1;
  }
  size_t bytes = mib << 20, n = bytes / sizeof(float4);
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  float4 *a = nullptr, *b = nullptr;
  float *partial = nullptr;
  int threads = 512, blocks = prop.multiProcessorCount * 8;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  CHECK(cudaMalloc(&partial, blocks * sizeof(float)));
  fillKernel<<<blocks, threads>>>(a, n);
  fillKernel<<<blocks, threads>>>(b, n);
  CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  auto median = [&](auto launch) {
    std::vector<float> ms;
    for (int r = 0; r < 23; ++r) {
      cudaEventRecord(start);
      launch();
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      float t = 0.f;
      cudaEventElapsedTime(&t, start, stop);
      if (r >= 3) // warm-ups
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  float copyMs = median([&] { copyKernel<<<blocks, threads>>>(a, b, n); });
  float readMs = median([&] { readKernel<<<blocks, threads>>>(a, n, partial); });
  CHECK(cudaGetLastError());
  std::vector<float> host(blocks);
  CHECK(cudaMemcpy(host.data(), partial, blocks * sizeof(float), cudaMemcpyDeviceToHost));
  double total = 0;
  for (float v : host)
    total += v;
  // Each float4 holds 1 + 2 + 3 + (i & 7): the sum checks the read happened.
  double expected = 6.0 * n + 3.5 * n;
  if (!(std::abs(total - expected) <= 1e-3 * expected)) {
    std::fprintf(stderr, "gpu_bandwidth: read kernel summed %g, expected %g\n", total, expected);
    return 1;
  }
  std::printf("{\"device\": \"%s\", \"buffer_mib\": %zu, \"copy_gbs\": %.1f, \"read_gbs\": %.1f}\n",
              prop.name, mib, 2.0 * bytes / (copyMs * 1e6), bytes / (readMs * 1e6));
  return 0;
}
