"""Fault-injection suites (`make chaos`): real processes on loopback, killed, stopped, partitioned
and restarted while executions run; each scenario prints one line of figures. See
docs/reliability.md."""
