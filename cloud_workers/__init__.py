"""Cloud workers: finish offloaded frames with the network's suffix and apply offload rewards."""
