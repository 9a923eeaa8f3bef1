"""Generated code for KEDA's external scaler gRPC protocol. Regenerate with scripts/gen_proto.sh."""
