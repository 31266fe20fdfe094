// RUN: moir-opt %s -moir-cpu-configure-lowering | FileCheck %s --check-prefix=DEFAULT
// RUN: moir-opt %s -moir-cpu-configure-lowering="threads=3 vector-width=8" | FileCheck %s --check-prefix=THREE
// RUN: not moir-opt %s -moir-cpu-configure-lowering="threads=0" 2>&1 | FileCheck %s --check-prefix=BAD

// The CPU's lowering configuration: marked for the thread pool, two work
// items per planned core, the CPU's vector lanes; the block sizes the
// lowering to linalg reads.
// DEFAULT: module attributes {moir.lowering_config = #moir.lowering_config<parallel = true, work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 16, row_quant = true, decode_ffn_block = 256>}
// THREE: #moir.lowering_config<parallel = true, work_items = 6, min_split_keys = 256, key_block = 64, query_rows = 64, ffn_block = 64, token_block = 16, vector_width = 8, row_quant = true, decode_ffn_block = 256>
// BAD: moir-cpu-configure-lowering: threads and vector-width must be positive
module {
}
