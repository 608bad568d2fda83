"""Observability: services that export metrics, Grafana dashboards, a live view and reports.

One module per responsibility:

* :mod:`~splitee.observability.promapi` - a small client of Prometheus's HTTP API,
* :mod:`~splitee.observability.service` - the loop and target registration of a service,
* :mod:`~splitee.observability.queries` - the PromQL shared by dashboards, top and report,
* :mod:`~splitee.observability.evaluator` - accuracy, cost and regret from results + truth,
* :mod:`~splitee.observability.exporter` - Kafka consumer lag and the Redis policy state,
* :mod:`~splitee.observability.dashboards` - the Grafana dashboards (built with grafanalib),
* :mod:`~splitee.observability.grafana` - pushing them to a Grafana with grafana-api,
* :mod:`~splitee.observability.top` - ``splitee top``, the live terminal view,
* :mod:`~splitee.observability.charts` - ``splitee report``, PNG charts of a run.
"""
