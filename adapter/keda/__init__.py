"""KEDA's external scaler protocol (gRPC), for clusters where KEDA owns the external
metrics API: the proto, its generated modules, the servicer and its server."""
