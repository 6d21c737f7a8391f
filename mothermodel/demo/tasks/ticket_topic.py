"""Topic of a support ticket: the root of the ticket task tree."""

from mothermodel import ABSTAIN, Task, labeling_function, slicing_function

task = Task(
    name="ticket_topic",
    dataset="tickets",
    classes=["BILLING", "TECHNICAL", "ACCOUNT", "OTHER"],
    description="What a support ticket is about",
    owner="support-analytics",
)

BILLING, TECHNICAL, ACCOUNT, OTHER = range(4)


@labeling_function()
def mentions_money(x):
    return BILLING if any(w in x.text for w in ("charge", "payment", "bill", "card", "fee")) else ABSTAIN


@labeling_function()
def mentions_failure(x):
    return TECHNICAL if any(w in x.text for w in ("error", "crash", "bug", "freezes", "connect", "load")) else ABSTAIN


@labeling_function()
def mentions_login(x):
    return ACCOUNT if any(w in x.text for w in ("password", "login", "username", "locked", "two-factor")) else ABSTAIN


@labeling_function()
def mentions_smalltalk(x):
    return OTHER if any(w in x.text for w in ("hours", "feedback", "partnership", "office", "newsletter")) else ABSTAIN


@slicing_function()
def short_ticket(x):
    # A slice to measure: tickets of a few words leave the model little to read (on valid it was weaker there).
    return len(x.text) < 45
