"""The multi-host test bed behind ``python deploy/cluster.py up|test|down``.

Three hosts are Linux network namespaces on a bridge; each runs sharedsock serving the example
Flask app and the example Django site. HAProxy and nginx in the default namespace balance over
them with the configs in ``deploy/haproxy`` and ``deploy/nginx``, and the scenarios put those
under a constant load while hosts are reloaded, upgraded, killed and stopped.
"""
