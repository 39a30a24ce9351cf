"""emabench: does weight averaging (EMA, Polyak, SWA) help your training, and with which settings?"""

__version__ = "0.1.0"
