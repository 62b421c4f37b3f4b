"""The doctor's rules, one module per family of mistakes. Importing this package registers every
rule; the families are imported in catalogue order, which is the order of `RULES`."""

from graphscope.doctor.rules import (history, growth, accumulation, parameters, models, values, dead, freed,  # noqa: F401, I001
                                     inplace, reads, distributed)
