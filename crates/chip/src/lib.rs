//! Chip card and PSAM emulators of the citizen card profile.
