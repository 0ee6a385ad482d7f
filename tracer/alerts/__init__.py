"""Alerting: subscriptions, signed webhooks, live event streams and following new blocks.

- `events`: the public JSON of an event (webhook body, SSE data), schemas/json/webhook_event.schema.json.
- `signing`: HMAC-SHA256 signatures of webhook bodies, and the check a receiver runs.
- `guard`: which webhook URLs may be called (SSRF), enforced at creation and again at connect time.
- `sequencer`: numbers committed events in commit order and fans them out to webhook queues.
- `listen`: a LISTEN connection that survives database restarts.
- `deliver`: the webhook delivery worker (`tracer alerts deliver`).
- `monitor`: follows new confirmed blocks for watching traces and retracts reorged hops (`tracer monitor`).
- `hub`: what an API process runs for streams (LISTEN, sequencing, waking SSE handlers).
- `subscriptions`: validating and creating subscriptions (shared by the API and tests).

Nothing here is needed to trace: a deployment without alerting simply runs none of it.
"""
