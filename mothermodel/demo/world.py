"""A small synthetic world for the demo: customer-support tickets and product reviews.

Texts come from templates whose words depend on hidden true labels, so weak
sources (keyword LFs, a noisy rating column) are right more often than not,
and the truth is known for evaluation. Deterministic for a given seed.
"""

from __future__ import annotations

import random

import pyarrow as pa

TOPICS = ["BILLING", "TECHNICAL", "ACCOUNT", "OTHER"]
BILLING_KINDS = ["REFUND", "INVOICE", "PRICING"]
REFUND_REASONS = ["DUPLICATE", "CANCELLED", "NOT_RECEIVED"]  # why a REFUND ticket wants its money back
ASPECTS = ["QUALITY", "DELIVERY", "PRICE"]  # what a review talks about
URGENCY = ["LOW", "HIGH"]
SENTIMENT = ["NEG", "POS"]

_TOPIC_WORDS = {
    "BILLING": ["charge", "payment", "bill", "card", "charged twice", "subscription fee"],
    "TECHNICAL": ["error", "crash", "bug", "app freezes", "cannot connect", "page won't load"],
    "ACCOUNT": ["password", "login", "username", "locked out", "two-factor", "email address"],
    "OTHER": ["opening hours", "feedback", "partnership", "your office", "a question", "newsletter"],
}
_BILLING_WORDS = {
    "REFUND": ["refund", "money back", "reimburse"],
    "INVOICE": ["invoice", "receipt", "VAT number"],
    "PRICING": ["price", "discount", "how much"],
}
_REFUND_WORDS = {
    "DUPLICATE": ["billed twice", "double charge", "charged two times", "duplicate payment"],
    "CANCELLED": ["cancelled my plan", "after I cancelled", "cancellation", "I unsubscribed"],
    "NOT_RECEIVED": ["never arrived", "not delivered", "still waiting for the order", "order never came"],
}
# Per aspect: (negative, positive) phrases, so an aspect phrase agrees with the review's sentiment.
_ASPECT_WORDS = {
    "QUALITY": (["the stitching came apart", "feels flimsy"], ["solid build", "well made"]),
    "DELIVERY": (["arrived late", "shipping took ages", "the box was crushed"], ["delivered a day early"]),
    "PRICE": (["too expensive", "overpriced"], ["good value", "worth every penny"]),
}
_URGENT = ["urgent", "asap", "immediately", "right now", "!!!"]
_CALM = ["when you have time", "no rush", "just wondering", "whenever possible"]
_OPENERS = ["Hi team,", "Hello,", "Dear support,", "Hey,", "Good morning,"]
_POS = ["love it", "great quality", "works perfectly", "excellent", "would buy again", "fast delivery"]
_NEG = ["broke after a week", "terrible", "waste of money", "disappointed", "stopped working", "poor quality"]
_PRODUCTS = ["headphones", "kettle", "backpack", "desk lamp", "phone case", "running shoes"]
TICKETS, REVIEWS = 1200, 800  # the demo's rows: small enough to train on a CPU in minutes


def tickets(n: int = TICKETS, seed: int = 7):
    """Support tickets with hidden gold labels for topic, billing kind, refund reason and urgency."""
    rng = random.Random(seed)
    # Refund reasons draw from their own stream, so the other labels and texts stay as they were.
    rng2 = random.Random(seed + 1000)
    rows: dict[str, list] = {k: [] for k in ("id", "split", "text", "gold_ticket_topic", "gold_billing_kind",
                                             "gold_refund_reason", "gold_urgency")}
    for i in range(n):
        topic = rng.choices(range(4), weights=[0.35, 0.3, 0.2, 0.15])[0]
        kind = rng.randrange(3) if TOPICS[topic] == "BILLING" else -1
        urgent = int(rng.random() < (0.45 if TOPICS[topic] in ("BILLING", "TECHNICAL") else 0.2))
        words = []
        # Each cue shows up with some probability, and sometimes a misleading one:
        # that is what makes the weak sources noisy.
        if rng.random() < 0.8:
            words.append(rng.choice(_TOPIC_WORDS[TOPICS[topic]]))
        if rng.random() < 0.15:
            words.append(rng.choice(_TOPIC_WORDS[rng.choice(TOPICS)]))
        if kind >= 0 and rng.random() < 0.75:
            words.append(rng.choice(_BILLING_WORDS[BILLING_KINDS[kind]]))
        if rng.random() < 0.7:
            words.append(rng.choice(_URGENT if urgent else _CALM))
        rng.shuffle(words)
        reason = rng2.randrange(3) if kind == 0 else -1
        cue = None
        if reason >= 0 and rng2.random() < 0.8:
            cue = rng2.choice(_REFUND_WORDS[REFUND_REASONS[reason]])
        elif rng2.random() < 0.04:  # a reason phrase on a ticket that is no refund: noise for the grandchild
            cue = rng2.choice(_REFUND_WORDS[rng2.choice(REFUND_REASONS)])
        if cue:
            words.insert(rng2.randrange(len(words) + 1), cue)
        text = f"{rng.choice(_OPENERS)} " + ", ".join(words or ["please help"]) + f". Ticket #{1000 + i}."
        split = "test" if i % 10 == 0 else ("valid" if i % 10 == 1 else "train")
        for k, v in (("id", f"t{i}"), ("split", split), ("text", text), ("gold_ticket_topic", topic),
                     ("gold_billing_kind", kind), ("gold_refund_reason", reason), ("gold_urgency", urgent)):
            rows[k].append(v)
    return pa.table(rows)


def reviews(n: int = REVIEWS, seed: int = 11):
    """Product reviews with a noisy star-rating column as a weak source of sentiment, and an aspect."""
    rng = random.Random(seed)
    rng2 = random.Random(seed + 1000)  # aspects: their own stream, as for refund reasons
    rows: dict[str, list] = {k: [] for k in ("id", "split", "text", "stars_weak", "gold_sentiment", "gold_review_aspect")}
    for i in range(n):
        pos = int(rng.random() < 0.55)
        cue = rng.choice(_POS if pos else _NEG) if rng.random() < 0.85 else rng.choice(_POS + _NEG)
        aspect = rng2.choices(range(3), weights=[0.45, 0.3, 0.25])[0]
        r2 = rng2.random()
        said = (rng2.choice(_ASPECT_WORDS[ASPECTS[aspect]][pos]) if r2 < 0.75 else
                rng2.choice(_ASPECT_WORDS[rng2.choice(ASPECTS)][pos]) if r2 < 0.85 else None)
        text = f"The {rng.choice(_PRODUCTS)}: {cue}" + (f", {said}." if said else ".")
        # stars_weak: 1 (POS) / 0 (NEG) from the rating, abstain (-1) when missing; 85% right.
        r = rng.random()
        stars = -1 if r < 0.3 else (pos if r < 0.3 + 0.7 * 0.85 else 1 - pos)
        split = "test" if i % 10 == 0 else ("valid" if i % 10 == 1 else "train")
        for k, v in (("id", f"r{i}"), ("split", split), ("text", text), ("stars_weak", stars), ("gold_sentiment", pos),
                     ("gold_review_aspect", aspect)):
            rows[k].append(v)
    return pa.table(rows)
