"""The plumbing every worker role shares, apart from what it computes.

Kept together so that a role (``edge_workers``, ``cloud_workers``) reads as its step alone:

* :mod:`~splitee.worker.runtime` - the faust app, batch agent, record isolation and signals,
* :mod:`~splitee.worker.records` - the records a step consumes and returns,
* :mod:`~splitee.worker.publish` - one batched send per output batch,
* :mod:`~splitee.worker.kafka_records` - a bounded decoder of Kafka record batches,
* :mod:`~splitee.worker.stall` - the watchdog that restarts a worker its group left idle.

Nothing is imported here, so importing one module does not pull in faust.
"""
