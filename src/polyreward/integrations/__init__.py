"""Adapters that run polyreward reward sets and estimators inside other RL libraries.

Each adapter lives in its own module and imports its library only there, so ``import polyreward``
never needs it: ``from polyreward.integrations.trl import PolyrewardGRPOTrainer`` (needs ``trl``).
"""
