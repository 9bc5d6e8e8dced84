//! Typed configuration from flags and `ASSIST_<SERVICE>_<NAME>` variables. A bad value stops the program
//! with exit code 64 and a message that names the variable.

use clap::Parser;

/// A configuration value that parsed but does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// A duration in seconds that must not be zero.
pub fn positive_secs(
    value: u64,
    variable: &'static str,
) -> Result<std::time::Duration, ConfigError> {
    if value == 0 {
        Err(ConfigError::new(variable, "must be greater than 0"))
    } else {
        Ok(std::time::Duration::from_secs(value))
    }
}

/// A database URL of a backend the services speak (`postgres://…`, `sqlite:…`).
pub fn database_url(value: &str, variable: &'static str) -> Result<(), ConfigError> {
    match crate::db::Backend::of_url(value) {
        Some(_) => Ok(()),
        None => Err(ConfigError::new(
            variable,
            "must start with postgres:// or sqlite:",
        )),
    }
}

/// A key-encryption key: base64 of exactly 32 bytes.
pub fn key_encryption_key(
    value: &str,
    variable: &'static str,
) -> Result<crate::keys::KeyEncryptionKey, ConfigError> {
    crate::keys::KeyEncryptionKey::from_base64(value)
        .ok_or_else(|| ConfigError::new(variable, "must be base64 of exactly 32 bytes"))
}

/// An `http://` or `https://` URL.
pub fn http_url(value: &str, variable: &'static str) -> Result<(), ConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(())
    } else {
        Err(ConfigError::new(variable, "must be an http(s) URL"))
    }
}

/// Exit code for bad configuration (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// Parses `C` from the process arguments and environment, or explains which variable is wrong.
pub fn parse<C: Parser>() -> Result<C, String> {
    parse_from::<C>(std::env::args_os())
}

/// Parses `C` from `args` and the environment.
pub fn parse_from<C: Parser>(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<C, String> {
    let command = <C as clap::CommandFactory>::command();
    let matches = command.clone().try_get_matches_from(args);
    let matches = match matches {
        Ok(matches) => matches,
        Err(error) => return Err(explain(&command, error)),
    };
    <C as clap::FromArgMatches>::from_arg_matches(&matches)
        .map_err(|error| explain(&command, error))
}

/// Adds the variable behind the failing argument to clap's message.
fn explain(command: &clap::Command, error: clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return error.to_string();
    }
    let failing = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let variable = failing.as_deref().and_then(|arg| variable_of(command, arg));
    match variable {
        Some(variable) => format!("invalid configuration {variable}: {}", error.render()),
        None => error.render().to_string(),
    }
}

/// The environment variable behind `--flag <VALUE>`, searched in `command` and its subcommands.
fn variable_of(command: &clap::Command, failing: &str) -> Option<String> {
    let own = command.get_arguments().find_map(|a| {
        let long = format!("--{}", a.get_long()?);
        let named = failing == long || failing.starts_with(&format!("{long} "));
        if named {
            a.get_env().map(|env| env.to_string_lossy().into_owned())
        } else {
            None
        }
    });
    own.or_else(|| {
        command
            .get_subcommands()
            .find_map(|sub| variable_of(sub, failing))
    })
}

/// Parses the configuration or exits with [`EXIT_CONFIG`] and the message on stderr.
pub fn parse_or_exit<C: Parser>() -> C {
    match parse::<C>() {
        Ok(config) => config,
        Err(message) => exit(&message),
    }
}

/// Prints `message` and exits with [`EXIT_CONFIG`].
pub fn exit(message: &str) -> ! {
    eprintln!("{}", message.trim_end());
    std::process::exit(EXIT_CONFIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Sample {
        #[arg(long, env = "ASSIST_SAMPLE_PORT", default_value_t = 1)]
        port: u16,
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let message =
            parse_from::<Sample>(["x".into(), "--port".into(), "seventy".into()]).unwrap_err();
        assert!(message.contains("ASSIST_SAMPLE_PORT"), "{message}");
        let ok = parse_from::<Sample>(["x".into(), "--port".into(), "70".into()]).unwrap();
        assert_eq!(ok.port, 70);
    }
}
