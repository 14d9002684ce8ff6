//! `features`: what this runtime supports, in the OCI runtime spec's `features` JSON.

use anyhow::Result;
use libcontainer::oci_spec::runtime::{
    CgroupBuilder, FeaturesBuilder, IDMapBuilder, LinuxFeatureBuilder, LinuxNamespaceType, MountExtensionsBuilder,
    SelinuxBuilder, VERSION,
};
use libcontainer::syscall::linux::MountOption;

pub fn features() -> Result<()> {
    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Time,
    ];
    let capabilities = caps::all().iter().map(|cap| cap.to_string()).collect::<Vec<_>>();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .capabilities(capabilities)
        .cgroup(CgroupBuilder::default().v1(true).v2(true).systemd(true).systemd_user(true).rdma(false).build()?)
        .mount_extensions(
            MountExtensionsBuilder::default().idmap(IDMapBuilder::default().enabled(false).build()?).build()?,
        )
        .selinux(SelinuxBuilder::default().enabled(false).build()?)
        .build()?;
    let hooks = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0".to_owned())
        .oci_version_max(VERSION.to_owned())
        .hooks(hooks.map(str::to_owned).to_vec())
        .mount_options(MountOption::known_options())
        .linux(linux)
        .build()?;
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(())
}
