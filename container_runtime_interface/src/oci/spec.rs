//! The bundle's `config.json`: youki's default spec (`youki spec`: masked and read-only paths,
//! mounts) adapted to one container of a workload, with Docker's defaults of
//! [`super::security`] (capabilities, seccomp), `noNewPrivileges`, and pids, memory and CPU
//! limits.

use crate::image::{ImageConfig, PreparedImage};
use crate::ContainerSpec;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder, Spec,
};
use std::collections::HashMap;
use std::path::Path;

/// Annotation carrying the instance id, read back by `list`.
pub(super) const ANNOTATION_INSTANCE: &str = "io.orchestrator.instance-id";
/// Annotation carrying the workload id, read back by `list`.
pub(super) const ANNOTATION_WORKLOAD: &str = "io.orchestrator.workload-id";
/// Annotation carrying the container's name in its workload.
pub(super) const ANNOTATION_NAME: &str = "io.orchestrator.container-name";

/// Maximum number of processes in one container.
pub(super) const PIDS_LIMIT: i64 = 1024;
/// CFS period; the quota is `millicores * CPU_PERIOD_US / 1000`.
pub(super) const CPU_PERIOD_US: u64 = 100_000;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments, with Docker's rules: `command` replaces the entrypoint (and drops the
/// image's cmd), `args` replace the cmd.
pub(super) fn process_args(spec: &ContainerSpec, image: &ImageConfig) -> Vec<String> {
    let c = &spec.config;
    let (entrypoint, default_args) = if c.command.is_empty() {
        (image.entrypoint.clone(), image.cmd.clone())
    } else {
        (c.command.clone(), Vec::new())
    };
    let args = if c.args.is_empty() {
        default_args
    } else {
        c.args.clone()
    };
    entrypoint.into_iter().chain(args).collect()
}

/// The environment: the image's, then the container's (overriding the same keys), with a
/// default `PATH` when neither sets one.
pub(super) fn process_env(spec: &ContainerSpec, image: &ImageConfig) -> Vec<String> {
    let mut env: Vec<String> = image.env.clone();
    for (key, value) in &spec.config.env {
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(format!("{key}={value}"));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    env
}

/// The uid and gid of an image's `User` (`uid`, `uid:gid`, `name`, `name:group`), names looked
/// up in the image's `/etc/passwd` and `/etc/group` under `rootfs`. A user without a group gets
/// its primary group (0 when the uid is not in `/etc/passwd`).
pub(super) fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), String> {
    /// `(name, id, primary gid)` of each entry of a passwd- or group-style file.
    fn entries(rootfs: &Path, file: &str) -> Vec<(String, u32, u32)> {
        std::fs::read_to_string(rootfs.join("etc").join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let id = f.get(2)?.parse().ok()?;
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0);
                Some((f[0].to_owned(), id, gid))
            })
            .collect()
    }
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = entries(rootfs, "passwd");
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (uid, passwd.iter().find(|e| e.1 == uid).map_or(0, |e| e.2)),
        Err(_) => passwd
            .iter()
            .find(|e| e.0 == name)
            .map(|e| (e.1, e.2))
            .ok_or_else(|| format!("user {name:?} of the image is not in its /etc/passwd"))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entries(rootfs, "group")
                .iter()
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| format!("group {g:?} of the image is not in its /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// The full runtime spec for `spec` under cgroup `/{cgroup_parent}/{id}`.
pub(super) fn build(
    spec: &ContainerSpec,
    prepared: &PreparedImage,
    cgroup_parent: &str,
) -> Result<Spec, String> {
    let image = &prepared.config;
    let args = process_args(spec, image);
    if args.is_empty() {
        return Err(format!(
            "no command: image {} has no entrypoint or cmd and the container sets none",
            spec.config.image
        ));
    }
    let mut oci = Spec::default();

    let mut process = oci.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_env(Some(process_env(spec, image)));
    process.set_cwd(
        image
            .working_dir
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_owned())
            .into(),
    );
    // Detached: stdio are the files `create` was started with.
    process.set_terminal(Some(false));
    // The container's `user` replaces the image's `USER`, as `docker run --user` does.
    if let Some(user) = spec.config.user.as_ref().or(image.user.as_ref()) {
        let (uid, gid) = resolve_user(user, &prepared.rootfs)?;
        let mut u = process.user().clone();
        u.set_uid(uid);
        u.set_gid(gid);
        process.set_user(u);
    }
    process.set_no_new_privileges(Some(true));
    process.set_capabilities(Some(super::security::capabilities()));
    oci.set_process(Some(process));

    // Each container has its own copy of the rootfs, so it may write to it, as with Docker,
    // unless it asks for a read-only one (`docker run --read-only`).
    if let Some(root) = oci.root_mut() {
        root.set_readonly(Some(spec.config.read_only_root));
    }
    oci.set_hostname(Some(spec.config.name.clone()));

    let mut linux = oci.linux().clone().unwrap_or_default();
    // Host network: no network namespace, servers bind host ports directly.
    if let Some(namespaces) = linux.namespaces_mut() {
        namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    }
    // Without a cgroups path youki creates `/:youki:<id>` at the root of every hierarchy.
    linux.set_cgroups_path(Some(format!("/{cgroup_parent}/{}", spec.id).into()));
    let mut resources = linux.resources().clone().unwrap_or_default();
    let requested = &spec.config.resources;
    if requested.memory_mb > 0 {
        let bytes = i64::try_from(requested.memory_mb.saturating_mul(1024 * 1024))
            .map_err(|_| format!("memory limit {} MB too large", requested.memory_mb))?;
        resources.set_memory(Some(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .map_err(|e| e.to_string())?,
        ));
    }
    if requested.cpu_millicores > 0 {
        let quota = i64::try_from(
            requested
                .cpu_millicores
                .saturating_mul(CPU_PERIOD_US)
                .div_ceil(1000),
        )
        .map_err(|_| format!("cpu {} millicores too large", requested.cpu_millicores))?;
        resources.set_cpu(Some(
            LinuxCpuBuilder::default()
                .period(CPU_PERIOD_US)
                .quota(quota)
                .build()
                .map_err(|e| e.to_string())?,
        ));
    }
    resources.set_pids(Some(
        LinuxPidsBuilder::default()
            .limit(PIDS_LIMIT)
            .build()
            .map_err(|e| e.to_string())?,
    ));
    linux.set_resources(Some(resources));
    linux.set_seccomp(Some(super::security::seccomp()));
    oci.set_linux(Some(linux));

    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_INSTANCE.to_owned(), spec.instance_id.to_string());
    annotations.insert(ANNOTATION_WORKLOAD.to_owned(), spec.workload_id.to_string());
    annotations.insert(ANNOTATION_NAME.to_owned(), spec.config.name.clone());
    oci.set_annotations(Some(annotations));
    Ok(oci)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_shared_types::{ContainerConfig, InstanceId, WorkloadId};

    fn spec(command: &[&str], args: &[&str]) -> ContainerSpec {
        let mut config = ContainerConfig::new("web", "busybox");
        config.command = command.iter().map(|s| s.to_string()).collect();
        config.args = args.iter().map(|s| s.to_string()).collect();
        config.env.insert("A".into(), "container".into());
        config.resources.memory_mb = 32;
        config.resources.cpu_millicores = 250;
        ContainerSpec {
            id: "i-web".into(),
            instance_id: InstanceId::from("i"),
            workload_id: WorkloadId::from("w"),
            config,
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/bin/ep".into()],
            cmd: vec!["default".into()],
            env: vec!["A=image".into(), "B=image".into()],
            working_dir: Some("/srv".into()),
            user: None,
        }
    }

    fn prepared(config: ImageConfig) -> PreparedImage {
        PreparedImage {
            rootfs: "/nonexistent".into(),
            config,
        }
    }

    /// A root filesystem with this `/etc/passwd`.
    fn rootfs_with_passwd(passwd: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        dir
    }

    #[test]
    fn image_users_resolve_to_ids() {
        let dir =
            rootfs_with_passwd("root:x:0:0:root:/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n");
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = |u: &str| resolve_user(u, dir.path());
        assert_eq!(r("www"), Ok((33, 34)));
        assert_eq!(r("www:staff"), Ok((33, 50)));
        assert_eq!(r("33"), Ok((33, 34)));
        assert_eq!(r("1000:1000"), Ok((1000, 1000)));
        assert_eq!(r("1000"), Ok((1000, 0)));
        assert!(r("nobody").unwrap_err().contains("\"nobody\""));
        assert!(r("www:wheel").unwrap_err().contains("/etc/group"));
    }

    #[test]
    fn args_follow_docker_rules() {
        assert_eq!(
            process_args(&spec(&[], &[]), &image()),
            ["/bin/ep", "default"]
        );
        assert_eq!(process_args(&spec(&[], &["x"]), &image()), ["/bin/ep", "x"]);
        assert_eq!(process_args(&spec(&["sh"], &[]), &image()), ["sh"]);
        // An image with an entrypoint and no cmd runs the entrypoint alone.
        let entrypoint_only = ImageConfig {
            cmd: Vec::new(),
            ..image()
        };
        assert_eq!(process_args(&spec(&[], &[]), &entrypoint_only), ["/bin/ep"]);
        assert_eq!(
            process_args(&spec(&["sh"], &["-c", "true"]), &image()),
            ["sh", "-c", "true"]
        );
    }

    #[test]
    fn container_env_overrides_image_env() {
        let env = process_env(&spec(&[], &[]), &image());
        assert_eq!(env, [DEFAULT_PATH, "B=image", "A=container"]);
    }

    #[test]
    fn spec_has_limits_cgroup_annotations_and_no_netns() {
        let oci = build(&spec(&[], &[]), &prepared(image()), "orch").unwrap();
        let linux = oci.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(std::path::Path::new("/orch/i-web"))
        );
        assert!(linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .all(|ns| ns.typ() != LinuxNamespaceType::Network));
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(
            res.memory().as_ref().unwrap().limit(),
            Some(32 * 1024 * 1024)
        );
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(25_000));
        assert_eq!(res.pids().as_ref().unwrap().limit(), PIDS_LIMIT);
        let process = oci.process().as_ref().unwrap();
        assert_eq!(process.terminal(), Some(false));
        assert_eq!(process.cwd().to_str(), Some("/srv"));
        let ann = oci.annotations().as_ref().unwrap();
        assert_eq!(ann[ANNOTATION_INSTANCE], "i");
        assert_eq!(ann[ANNOTATION_WORKLOAD], "w");
    }

    #[test]
    fn docker_defaults_apply() {
        use oci_spec::runtime::{Capability, LinuxSeccompAction};
        let oci = build(&spec(&[], &[]), &prepared(image()), "orch").unwrap();
        let process = oci.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().as_ref().unwrap();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            let set = set.as_ref().unwrap();
            assert_eq!(set.len(), 13);
            assert!(set.contains(&Capability::Chown) && set.contains(&Capability::Kill));
            assert!(!set.contains(&Capability::NetRaw) && !set.contains(&Capability::SysAdmin));
        }
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        let seccomp = oci.linux().as_ref().unwrap().seccomp().as_ref().unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActAllow);
        let refused: Vec<&String> = seccomp
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActErrno)
            .flat_map(|s| s.names())
            .collect();
        for name in [
            "unshare", "mount", "setns", "ptrace", "bpf", "clone3", "clone",
        ] {
            assert!(refused.iter().any(|r| *r == name), "{name} refused");
        }
        assert_eq!(oci.root().as_ref().unwrap().readonly(), Some(false));
    }

    #[test]
    fn read_only_root_and_user_override() {
        let dir = rootfs_with_passwd("www:x:33:34::/:/bin/false\n");
        let mut s = spec(&[], &[]);
        s.config.read_only_root = true;
        s.config.user = Some("www".into());
        let mut img = image();
        img.user = Some("0".into());
        let p = PreparedImage {
            rootfs: dir.path().to_owned(),
            config: img,
        };
        let oci = build(&s, &p, "orch").unwrap();
        assert_eq!(oci.root().as_ref().unwrap().readonly(), Some(true));
        let user = oci.process().as_ref().unwrap().user();
        assert_eq!((user.uid(), user.gid()), (33, 34));
    }

    #[test]
    fn empty_command_is_an_error() {
        let err = build(&spec(&[], &[]), &prepared(ImageConfig::default()), "orch").unwrap_err();
        assert!(err.contains("no command"), "{err}");
    }
}
