//! The depprobe image and service: the Dockerfile's command, port and user agree
//! with compose and the agent's configuration, that configuration passes `depprobe
//! validate`, and the image's HEALTHCHECK works against a real server.

use std::process::Command;

use depprobe_tests::{HttpServer, Reply, closed_port};

use crate::files::{Compose, Dockerfile};
use crate::{depprobe_bin, depprobe_config_path, load_agent_config, output_text};

#[test]
fn the_stack_config_of_the_depprobe_service_passes_depprobe_validate() {
    let compose = Compose::load();
    let config = depprobe_config_path(&compose);
    let out = Command::new(depprobe_bin())
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .expect("run depprobe validate");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "depprobe validate -c {} failed ({}):\n{text}",
        config.display(),
        out.status
    );
    assert!(text.contains(": OK,"), "{text}");
}

#[test]
fn image_runs_the_agent_unprivileged_with_the_config_compose_mounts() {
    let d = Dockerfile::load();
    let compose = Compose::load();
    let service = compose.service("depprobe");
    assert_eq!(d.entrypoint, vec!["depprobe"]);
    assert_eq!(d.cmd, vec!["run", "-c", "/etc/depprobe/depprobe.yaml"]);
    let command = if service.command.is_empty() {
        &d.cmd
    } else {
        &service.command
    };
    assert_eq!(command, &d.cmd, "compose runs the image's own command");
    assert!(
        service.repo_path_of(&d.cmd[2]).is_some(),
        "compose mounts nothing at {}",
        d.cmd[2]
    );
    let listen = load_agent_config(&compose).agent.listen.expect("listen");
    assert_eq!(d.exposed, vec![listen.port()], "EXPOSE and agent.listen");
    let user = d.user.expect("a USER instruction");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "0" && uid != "root",
        "the image runs as root ({user})"
    );
    assert_eq!(
        service.build.as_deref(),
        Some("."),
        "compose builds the Dockerfile"
    );
}

async fn run_healthcheck(port: u16) -> std::process::ExitStatus {
    let d = Dockerfile::load();
    let (program, args) = d.healthcheck.split_first().expect("HEALTHCHECK CMD");
    tokio::process::Command::new(program)
        .args(args)
        .env("DEPPROBE_HEALTH_PORT", port.to_string())
        .output()
        .await
        .expect("run the HEALTHCHECK command")
        .status
}

#[tokio::test]
async fn image_healthcheck_passes_on_healthz_200_and_fails_otherwise() {
    let healthy = HttpServer::builder()
        .respond(|req| match req.path.as_str() {
            "/healthz" => Reply::ok("ok"),
            _ => Reply::new(404, "not found"),
        })
        .start()
        .await
        .unwrap();
    assert!(run_healthcheck(healthy.port()).await.success());

    let unhealthy = HttpServer::builder()
        .respond(|_| Reply::new(503, "starting"))
        .start()
        .await
        .unwrap();
    assert!(!run_healthcheck(unhealthy.port()).await.success());

    let nothing = closed_port().await.unwrap();
    assert!(!run_healthcheck(nothing).await.success());
}
