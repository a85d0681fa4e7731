"""Control-plane services: the operations the gRPC API exposes, over the store and executor.

Each service takes plain Python arguments and returns model objects; ``controlplane.api`` only
converts protobuf to and from them.
"""
