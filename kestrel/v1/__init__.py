"""Generated protobuf and gRPC modules for kestrel.v1 (see protos/)."""
