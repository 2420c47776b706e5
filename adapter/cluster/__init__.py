"""The Kubernetes cluster as scaleahead uses it: the API client (kube), the HPAs whose
series it pins and whose pods' start-up it measures (workloads), and the serving
certificate shared through a Secret (certs)."""
