"""The behaviour of the WAF and config area, as plain functions (tasks and admin and the API call these).

- ``versions``: create, validate, replay, submit for approval, the approval decision (through audit.approvals)
- ``deployment``: canary -> soak -> fleet, automatic rollback on a NACK, manual rollback, the push builders
- ``emergency``: emergency rules by people and automation, expiry, the ``emergency_rules`` builder
- ``replay_sets``: stored requests to replay against (imported corpora)
- ``roles``: the author / approver / deployer groups
"""
