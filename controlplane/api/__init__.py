"""gRPC servicers and protobuf <-> model conversion: the only place protobuf types appear."""
