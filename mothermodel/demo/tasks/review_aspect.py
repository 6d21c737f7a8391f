"""What a product review talks about: declarative LFs (KeywordLF, RegexLF) beside a Python one."""

from mothermodel import ABSTAIN, KeywordLF, RegexLF, Task, labeling_function

task = Task(
    name="review_aspect",
    dataset="reviews",
    classes=["QUALITY", "DELIVERY", "PRICE"],
    description="Is a review about build quality, delivery or price?",
    owner="product-insights",
)

QUALITY, DELIVERY, PRICE = range(3)

# Declarative: DuckDB evaluates these over the whole dataset in SQL, no Python per row.
talks_build = KeywordLF("talks_build", ["stitching", "solid build", "flimsy", "well made"], label=QUALITY)
talks_shipping = RegexLF("talks_shipping", r"\b(arrived|shipping|delivered|delivery)\b|the box", label=DELIVERY,
                         ignore_case=True)


@labeling_function()
def talks_money(x):
    return PRICE if any(w in x.text for w in ("expensive", "value", "penny", "price")) else ABSTAIN
