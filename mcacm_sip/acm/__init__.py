"""Layer 1: the ACM information flows (TS 23.280 10.17.2) as typed values, and their XML form."""
