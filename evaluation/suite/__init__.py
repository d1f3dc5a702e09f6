"""Suites: many models × tasks × seeds as one planned, resumable run (local worker processes or Ray)."""
