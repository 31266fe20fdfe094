// The routing recorder: compiled MoE layers hand it their expert choices
// (moe.record_routing -> moir_rt_record_routing); while recording it counts
// each expert's selections per MoE layer, and moir_routing_record_stop
// writes them out for moirc --expert-placement. When not recording, the
// compiled code's call returns after one relaxed load. The calls carry no
// layer (identical layers share one compiled function): the k-th call of a
// forward pass on a thread is MoE layer k, and sessions reset the count
// before each pass (beginForward).
#include "moir/runtime.h"
#include "model.h"
#include "status.h"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

using moir::rt::fail;

namespace {

struct LayerCounts {
  int64_t topK = 0;
  std::vector<uint64_t> counts;
  uint64_t tokens = 0;
};

std::atomic<bool> recording{false};
std::mutex mutex;
std::map<int64_t, LayerCounts> layers;
std::string problem;
thread_local int64_t nextLayer = 0;

} // namespace

void moir::rt::routingBeginForward() { nextLayer = 0; }

extern "C" __attribute__((visibility("default"))) void
moir_rt_record_routing(const int32_t *ids, int64_t count, int64_t topK, int64_t experts) {
  int64_t layer = nextLayer++;
  if (!recording.load(std::memory_order_relaxed))
    return;
  std::lock_guard<std::mutex> lock(mutex);
  if (experts <= 0 || topK <= 0 || count < 0 || count % topK != 0)
    return;
  LayerCounts &l = layers[layer];
  if (l.counts.empty()) {
    l.counts.assign(static_cast<size_t>(experts), 0);
    l.topK = topK;
  }
  if (static_cast<int64_t>(l.counts.size()) != experts) {
    problem = "MoE layer " + std::to_string(layer) + " reported " + std::to_string(experts) +
              " experts after " + std::to_string(l.counts.size());
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    int32_t e = ids[i];
    // An id out of range would be a compiler bug; it is not counted, and
    // the file says so.
    if (e < 0 || e >= experts) {
      problem = "MoE layer " + std::to_string(layer) + " chose expert " + std::to_string(e) +
                " of " + std::to_string(experts);
      continue;
    }
    ++l.counts[static_cast<size_t>(e)];
  }
  l.tokens += static_cast<uint64_t>(count / topK);
}

extern "C" moir_status moir_routing_record_start(void) {
  std::lock_guard<std::mutex> lock(mutex);
  layers.clear();
  problem.clear();
  recording.store(true, std::memory_order_relaxed);
  return moir::rt::ok();
}

extern "C" moir_status moir_routing_record_stop(const char *path) {
  recording.store(false, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mutex);
  if (!path)
    return fail(MOIR_ERROR_INVALID_ARGUMENT, "moir_routing_record_stop: null path");
  if (!problem.empty())
    return fail(MOIR_ERROR_FORMAT, std::string(path) + ": routing not written: " + problem);
  if (layers.empty())
    return fail(MOIR_ERROR_UNSUPPORTED,
                std::string(path) + ": no routing was recorded (not an MoE model, or compiled "
                                    "with --moe-record-routing=false)");
  std::string json = "{\"format\": \"moir-routing 1\", \"layers\": [";
  bool first = true;
  for (const auto &[layer, l] : layers) {
    json += first ? "\n" : ",\n";
    first = false;
    json += "  {\"moe_layer\": " + std::to_string(layer) + ", \"experts\": " +
            std::to_string(l.counts.size()) + ", \"top_k\": " + std::to_string(l.topK) +
            ", \"tokens\": " + std::to_string(l.tokens) + ", \"counts\": [";
    for (size_t e = 0; e < l.counts.size(); ++e)
      json += (e ? ", " : "") + std::to_string(l.counts[e]);
    json += "]}";
  }
  json += "\n]}\n";
  FILE *f = std::fopen(path, "w");
  if (!f)
    return fail(MOIR_ERROR_IO, std::string(path) + ": cannot write: " + std::strerror(errno));
  bool written = std::fwrite(json.data(), 1, json.size(), f) == json.size();
  if (std::fclose(f) != 0 || !written)
    return fail(MOIR_ERROR_IO, std::string(path) + ": write failed: " + std::strerror(errno));
  return moir::rt::ok();
}
