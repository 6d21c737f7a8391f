"""Kind of billing ticket: a child of ticket_topic (a billing kind implies topic BILLING)."""

from mothermodel import ABSTAIN, Task, labeling_function

task = Task(
    name="billing_kind",
    dataset="tickets",
    classes=["REFUND", "INVOICE", "PRICING"],
    parent="ticket_topic",
    parent_class="BILLING",
    description="Refund, invoice or pricing question, for BILLING tickets",
    owner="finance-ops",
)


@labeling_function()
def wants_money_back(x):
    return 0 if ("refund" in x.text or "money back" in x.text or "reimburse" in x.text) else ABSTAIN


@labeling_function()
def asks_for_paperwork(x):
    return 1 if ("invoice" in x.text or "receipt" in x.text or "VAT" in x.text) else ABSTAIN


@labeling_function()
def asks_price(x):
    return 2 if ("price" in x.text or "discount" in x.text or "how much" in x.text) else ABSTAIN
