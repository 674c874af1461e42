"""Pure sampler kernels over batched parameters (BlackJAX style): each kernel is a pair
``init(...) -> state`` and ``step(state, ...) -> (state, info)``; one module per kernel."""
