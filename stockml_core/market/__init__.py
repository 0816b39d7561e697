"""What is known about the market, read with its quirks repaired and its bad rows quarantined.

``data`` reads a data folder (prices, universe, market context, rare events); ``calendar`` is the NYSE
trading calendar; ``quality`` screens price rows; ``events`` is the rare-event catalog and archive;
``regimes`` labels each date from VIX and the S&P 500 drawdown.
"""
