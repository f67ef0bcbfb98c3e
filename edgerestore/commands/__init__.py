"""One module per `edgerestore` verb: `add_arguments(parser)` and `run(args) -> int`. Heavy imports
(torch, TensorRT) happen inside `run`, never at module import."""
