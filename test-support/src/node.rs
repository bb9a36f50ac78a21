//! Node.js tools some tests drive (graphql-http's audit, the admin page in Chromium): is
//! one installed, and running it.

/// Whether a Node.js tool a test drives is installed. If not, the test is skipped loudly,
/// or, under `CI`, fails with how to install it.
pub fn node_tool_installed(installed: bool, what: &str, install: &str) -> bool {
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {what} is not installed: {install}"
        );
        eprintln!("\n!!!!! {what} is not installed: SKIPPING its test. Run `{install}`.\n");
    }
    installed
}

/// Runs `node <script>` with `args` and `envs` off the async runtime; its output.
pub async fn run_node(script: String, args: Vec<String>, envs: Vec<(&'static str, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args(args)
            .envs(envs)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap()
}
