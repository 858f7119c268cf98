"""The ways of calling the SDK that a measurement compares: the Mode base, the registry and the modes."""
