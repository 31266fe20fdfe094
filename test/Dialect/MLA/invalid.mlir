// RUN: moir-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{MLA num_heads, kv_lora_rank, qk_nope_head_dim and v_head_dim must be positive}}
func.func private @f() attributes {c = #mla.config<num_heads = 0, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>}

// -----

// expected-error @+1 {{MLA qk_rope_head_dim must be positive and even, got 7}}
func.func private @f() attributes {c = #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 7, v_head_dim = 16>}

// -----

// expected-error @+1 {{MLA q_lora_rank must be >= 0 (0: no query compression), got -1}}
func.func private @f() attributes {c = #mla.config<num_heads = 4, q_lora_rank = -1, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16>}

// -----

func.func @f(%x: tensor<?x4x16xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{input must have rank 2}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x4x16xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x4x16xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<2x64xf32>, %p: tensor<3xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{positions size is 3, expected 2}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<2x64xf32>, tensor<3xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<2x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x?xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{hidden dimension must be static}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x?xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x?xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{result type must equal the input type}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x32xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{updated caches must have the caches' types}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<64x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x16xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{latent cache width is 16, expected 32}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x16xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x16xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x4xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{rope cache width is 4, expected 8}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x4xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x4xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<64x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{rope cache capacity is 64, expected 128}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<64x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<64x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{rope dim 4 must equal qk_rope_head_dim 8}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 4> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{scale and epsilon must be positive}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 0.0 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %qa: tensor<24x64xf32>, %qn: tensor<24xf32>, %qb: tensor<96x24xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_lora_rank = 0 needs q(...) and no q_lora(...)}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q_lora(%qa, %qn, %qb) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<24x64xf32>, tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_lora_rank > 0 needs q_lora(...) and no q(...)}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<80x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_proj must be 96x64, got 'tensor<80x64xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<80x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %qa: tensor<20x64xf32>, %qn: tensor<24xf32>, %qb: tensor<96x24xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_a_proj must be 24x64, got 'tensor<20x64xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q_lora(%qa, %qn, %qb) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<20x64xf32>, tensor<24xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %qa: tensor<24x64xf32>, %qn: tensor<20xf32>, %qb: tensor<96x24xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_a_norm size is 20, expected 24}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q_lora(%qa, %qn, %qb) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<24x64xf32>, tensor<20xf32>, tensor<96x24xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %qa: tensor<24x64xf32>, %qn: tensor<24xf32>, %qb: tensor<96x20xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{q_b_proj must be 96x24, got 'tensor<96x20xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q_lora(%qa, %qn, %qb) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, q_lora_rank = 24, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<24x64xf32>, tensor<24xf32>, tensor<96x20xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<32x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{kv_a_proj must be 40x64, got 'tensor<32x64xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<32x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<40xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{kv_a_norm size is 40, expected 32}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<40xf32>, tensor<128x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<64x32xf32>, %wo: tensor<64x64xf32>) {
  // expected-error @+1 {{kv_b_proj must be 128x32, got 'tensor<64x32xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<64x32xf32>, tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%x: tensor<?x64xf32>, %p: tensor<?xi64>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %o: index, %wq: tensor<96x64xf32>, %kva: tensor<40x64xf32>, %kvn: tensor<32xf32>, %kvb: tensor<128x32xf32>, %wo: tensor<64x128xf32>) {
  // expected-error @+1 {{o_proj must be 64x64, got 'tensor<64x128xf32>'}}
  %0:3 = mla.attention %x, %p, %c, %r[%o] q(%wq) kv(%kva, %kvn, %kvb) out(%wo) #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true> scale = 0.2 epsilon = 1.0e-06 : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index, tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>, tensor<64x128xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
  return
}

// -----

func.func @f(%qn: tensor<?x2x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{q_nope heads is 2, expected 4}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x2x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x8xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{q_nope head dimension is 8, expected 16}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x4x8xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x16xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{q_pe head dimension is 16, expected 8}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<2x4x16xf32>, %qp: tensor<3x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{q_pe tokens is 3, expected 2}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<2x4x16xf32>, tensor<3x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{result head dimension is 8, expected 16}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x8xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x16xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{latent cache width is 16, expected 32}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x16xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{scale must be positive}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.0 form = absorbed : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
  return
}

// -----

func.func @f(%qn: tensor<?x4x16xf32>, %qp: tensor<?x4x8xf32>, %c: tensor<128x32xf32>, %r: tensor<128x8xf32>, %p: tensor<?xi64>, %w: tensor<128x16xf32>) {
  // expected-error @+1 {{kv_b_proj must be 128x32, got 'tensor<128x16xf32>'}}
  %0 = mla.attend %qn, %qp, %c, %r, %p, %w config <num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16, qk_rope_head_dim = 8, v_head_dim = 16> scale = 0.2 form = absorbed : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>, tensor<?xi64>, tensor<128x16xf32>) -> tensor<?x4x16xf32>
  return
}
