//! Entry points for the fuzz targets of `fuzz/` (feature `fuzzing`): thin wrappers over the
//! crate-private parsing the API does, so that nothing else has to be made public. Not an API.

use crate::extract::{parse_manifest, Format};
use crate::page::{PageRequest, Resource};
use crate::ApiError;
use orchestrator_shared_types::WorkloadDefinition;

/// A manifest body as the create, update and preview routes read it: YAML when `yaml`, else
/// JSON, parsed and validated.
pub fn manifest(yaml: bool, body: &[u8]) -> Result<WorkloadDefinition, ApiError> {
    let format = if yaml { Format::Yaml } else { Format::Json };
    parse_manifest(format, body)
}

/// The paged resources, in the order `resource` below numbers them.
pub const RESOURCES: [&str; 4] = ["workloads", "instances", "nodes", "events"];

fn resource(index: usize) -> Resource {
    [
        Resource::Workloads,
        Resource::Instances,
        Resource::Nodes,
        Resource::Events,
    ][index % RESOURCES.len()]
}

/// The `continue` token of resource `index` (modulo 4) for a page ending at `key`.
pub fn page_token(index: usize, key: &str) -> String {
    resource(index).token(key)
}

/// The key a `continue` token of resource `index` ends at, as a list route decodes it.
pub fn key_of_page_token(index: usize, token: &str) -> Result<String, ApiError> {
    resource(index).key_of_token(token)
}

/// A list request's `limit` and `continue` checked as a list route does: the page size and the
/// key to start after.
pub fn page_request(
    index: usize,
    limit: Option<usize>,
    token: Option<&str>,
) -> Result<(Option<usize>, Option<String>), ApiError> {
    PageRequest::new(resource(index), limit, token).map(|p| (p.limit, p.after))
}
