"""Charges an order. Payload: {"order_id": N, "amount_cents": N, "chain": bool}.

An amount of zero or less can never be charged: exit 65, a permanent failure that sends
the job straight to the dead-letter queue. With "chain": true (a dynamic workflow) it
hands on the confirmation e-mail as a follow-up, written with this step's completion.
"""
import json
import os
import sys

order = json.load(sys.stdin)
if order.get("amount_cents", 0) <= 0:
    print(f"order {order.get('order_id')}: cannot charge {order.get('amount_cents')} cents", file=sys.stderr)
    sys.exit(65)
print(f"charged order {order['order_id']} (attempt {os.environ['JOBCHAIN_ATTEMPT']})", file=sys.stderr)
result = {"output": {"charged_cents": order["amount_cents"]}}
if order.get("chain"):
    result["enqueue"] = [{"kind": "send_order_confirmation", "payload": order}]
print(json.dumps(result))
