func.func @f(%x: tensor<?x64xf32>) -> tensor<?x128xf32> {
  %w = arith.constant dense<0.5> : tensor<128x64xf32>
  %y = llm.linear %x, %w : (tensor<?x64xf32>, tensor<128x64xf32>) -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}
