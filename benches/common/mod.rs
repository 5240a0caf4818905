//! Helpers shared by the benchmarks: options from `--flag value`,
//! `--flag=value` or an environment variable.

/// The value of `flag` on the command line, else of the environment variable `env`.
pub fn arg_value(args: &[String], flag: &str, env: &str) -> Option<String> {
    let eq = format!("{flag}=");
    for (i, a) in args.iter().enumerate() {
        if a == flag {
            return args.get(i + 1).cloned();
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v.to_string());
        }
    }
    std::env::var(env).ok().filter(|v| !v.trim().is_empty())
}

/// A number option; an unreadable value is reported and the default used.
pub fn arg_num<T: std::str::FromStr>(args: &[String], flag: &str, env: &str, default: T) -> T {
    match arg_value(args, flag, env) {
        Some(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("bench: ignoring {flag}/{env} = {v:?} (not a number)");
            default
        }),
        None => default,
    }
}

/// A switch: present on the command line, or the variable set to something true.
pub fn arg_flag(args: &[String], flag: &str, env: &str) -> bool {
    args.iter().any(|a| a == flag)
        || std::env::var(env).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}
