"""The HTTP interceptor: routes from HTTPScaledObjects, held requests during cold starts, proxying, and its
load (requests in flight, request rate) as a push source for the same decision core as every ScaledObject."""
