"""Approval requests arrive with the approvals work; the engine already treats `approval` nodes
as a node type (see `orchestrator.engine`)."""
