//! OTLP
