"""Code generated from service/oip_grpc/proto by scripts/generate_grpc.py (`make grpc`)."""
