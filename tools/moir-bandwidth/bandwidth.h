//===- bandwidth.h - STREAM-style memory bandwidth probe --------------------===//
//
// The machine's achievable memory bandwidth, the bound a decode step (which
// reads every weight it uses once) runs against. Only the C++ standard
// library: it builds wherever the runtime does.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_BANDWIDTH_H
#define MOIR_BANDWIDTH_H

namespace moir {

/// STREAM-style triad (c = a + 1.5 b) on every hardware thread over three
/// 128 MiB buffers, far larger than the caches; the best of five passes, in
/// GB/s (1e9 bytes per second, counting the two reads and the write).
double measureBandwidth();

} // namespace moir

#endif
