"""Urgency of a ticket; uses ticket_topic's output as one more weak source."""

from mothermodel import ABSTAIN, Task, TaskOutput, labeling_function

task = Task(
    name="urgency",
    dataset="tickets",
    classes=["LOW", "HIGH"],
    # Account and other tickets are rarely urgent: ticket_topic's output votes LOW for them.
    sources=[TaskOutput("ticket_topic", map={"ACCOUNT": "LOW", "OTHER": "LOW"})],
    description="Does the ticket need an answer today?",
    owner="support-ops",
)


@labeling_function()
def shouts(x):
    return 1 if any(w in x.text.lower() for w in ("urgent", "asap", "immediately", "right now", "!!!")) else ABSTAIN


@labeling_function()
def relaxed(x):
    return 0 if any(w in x.text for w in ("no rush", "when you have time", "wondering", "whenever")) else ABSTAIN
