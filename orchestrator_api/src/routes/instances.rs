//! `/api/v1/instances`: replicas from the store, optionally of one workload and/or on one node.

use super::find_workload;
use crate::extract::ApiQuery;
use crate::page::{store_page, PageRequest, Resource, MAX_LIMIT};
use crate::{ApiError, ApiState};
use axum::extract::State;
use axum::Json;
use orchestrator_shared_types::api::{ErrorBody, ListResponse};
use orchestrator_shared_types::{NodeId, WorkloadId, WorkloadInstance};
use serde::Deserialize;
use state_store_interface::typed::instance_prefix;
use state_store_interface::{StateStore, StoreExt, StoredObject};

/// Entries read at most by one paged request with a `node` filter. The store cannot look
/// instances up by node, so such a page is a scan that keeps what matches; this bounds it (a
/// few tens of milliseconds) when few instances match. Larger than [`MAX_LIMIT`] so that a full
/// page is always possible.
const MAX_SCAN: usize = 10 * MAX_LIMIT;
/// Entries read per store call of that scan.
const SCAN_CHUNK: usize = 500;

/// Filters and paging of `GET /api/v1/instances`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InstanceFilter {
    /// Only instances of this workload (name or id).
    workload: Option<String>,
    /// Only instances on this node (id or name).
    node: Option<String>,
    /// Items per page, 1 to 1000 (larger values are lowered to 1000). Without it, every
    /// matching instance. With `node`, a page may hold fewer (even none) while `continue` is
    /// present: follow it until it is absent.
    limit: Option<usize>,
    /// The `continue` of the previous page (an opaque token), with the same filters.
    #[serde(rename = "continue")]
    next: Option<String>,
}

/// List instances, sorted by workload id then instance id; all of them, or one page with
/// `limit`.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    operation_id = "list_instances",
    tag = "instances",
    params(InstanceFilter),
    responses(
        (status = 200, description = "Matching instances, or one page of them with `continue` when more may follow", body = ListResponse<WorkloadInstance>),
        (status = 400, description = "Bad query string", body = ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<ApiState>,
    ApiQuery(filter): ApiQuery<InstanceFilter>,
) -> Result<Json<ListResponse<WorkloadInstance>>, ApiError> {
    let page = PageRequest::new(Resource::Instances, filter.limit, filter.next.as_deref())?;
    let prefix = match &filter.workload {
        // A name that is not (or no longer) a workload may still be the id of one whose
        // instances are being cleaned up: look it up as an id.
        Some(key) => match find_workload(&state, key).await? {
            Some(v) => instance_prefix(&v.value.id),
            None => instance_prefix(&WorkloadId::from(key.as_str())),
        },
        None => String::new(),
    };
    let store = &**state.store();
    let Some(node) = &filter.node else {
        // Keys are `{workload_id}/{instance_id}`: the workload filter is a key prefix, so a page
        // is one range scan.
        let ListResponse { items, next } =
            store_page::<WorkloadInstance>(store, Resource::Instances, &prefix, &page).await?;
        let items = items.into_iter().map(|v| v.value).collect();
        return Ok(Json(ListResponse { items, next }));
    };
    let ids = node_ids(&state, node).await;
    let on_node = |i: &WorkloadInstance| i.node_id.as_ref().is_some_and(|n| ids.contains(n));
    let Some(limit) = page.limit else {
        // Everything was asked for: one read, filtered.
        let items = store
            .list_obj_page::<WorkloadInstance>(&prefix, page.after.as_deref(), usize::MAX)
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(on_node)
            .collect();
        return Ok(Json(ListResponse::new(items)));
    };

    let (items, next) = scan_page(store, &prefix, page.after, limit, MAX_SCAN, on_node).await?;
    let next = next.map(|key| Resource::Instances.token(&key));
    Ok(Json(ListResponse { items, next }))
}

/// One page of the instances under `prefix` after `after` that are `wanted`, for a filter the
/// store cannot index: scans in key order, keeping matches, until the page is full and one more
/// match shows that another page exists, the instances run out, or `budget` instances have been
/// read. Returns the page and, if more may follow, the key to continue after: the last instance
/// scanned rather than the last kept, so that the next page does not read the same
/// non-matching instances again. A page cut short by the budget may be short, even empty.
async fn scan_page(
    store: &dyn StateStore,
    prefix: &str,
    after: Option<String>,
    limit: usize,
    budget: usize,
    wanted: impl Fn(&WorkloadInstance) -> bool,
) -> Result<(Vec<WorkloadInstance>, Option<String>), ApiError> {
    let mut items = Vec::new();
    let mut cursor = after;
    // At least one read, so that every page moves the cursor and a walk always ends.
    let mut budget = budget.max(1);
    loop {
        let ask = budget.min(SCAN_CHUNK);
        let chunk = store
            .list_obj_page::<WorkloadInstance>(prefix, cursor.as_deref(), ask)
            .await?;
        let exhausted = chunk.len() < ask;
        budget -= chunk.len();
        for v in chunk {
            let key = v.value.key();
            if wanted(&v.value) {
                if items.len() == limit {
                    return Ok((items, cursor));
                }
                items.push(v.value);
            }
            cursor = Some(key);
        }
        if exhausted {
            return Ok((items, None));
        }
        if budget == 0 {
            return Ok((items, cursor));
        }
    }
}

/// The ids `key` may designate: itself, and the ids of nodes named `key`. The filter still
/// works by id when the loop cannot be asked for names.
async fn node_ids(state: &ApiState, key: &str) -> Vec<NodeId> {
    let mut ids = vec![NodeId::from(key)];
    if let Ok(nodes) = state.handle().nodes().await {
        ids.extend(
            nodes
                .into_iter()
                .filter(|n| n.node.name == key)
                .map(|n| n.node.id),
        );
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_store_interface::{InMemoryStore, Precondition};

    /// 60 instances, one in six on `n1`; scanned with a budget of 25 and pages of 2.
    async fn store() -> InMemoryStore {
        let store = InMemoryStore::new();
        for i in 0..60 {
            let mut instance =
                WorkloadInstance::new(format!("i{i:02}").as_str().into(), WorkloadId::from("w"));
            instance.node_id = Some(if i % 6 == 0 { "n1" } else { "n2" }.into());
            store.put_obj(&instance, Precondition::None).await.unwrap();
        }
        store
    }

    fn on_n1(i: &WorkloadInstance) -> bool {
        i.node_id.as_ref().is_some_and(|n| n.as_str() == "n1")
    }

    /// Following the returned cursor finds every match once, in order, in pages no larger than
    /// the limit, reading no more than the budget per page; pages may be short (the budget ran
    /// out between sparse matches) and the walk ends without a cursor.
    #[tokio::test]
    async fn a_filtered_walk_finds_every_match_once_within_its_budget() {
        let store = store().await;
        let mut found = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let (page, next) = scan_page(&store, "w/", cursor, 2, 25, on_n1).await.unwrap();
            assert!(page.len() <= 2);
            pages += 1;
            found.extend(page.into_iter().map(|i| i.id.to_string()));
            match next {
                Some(key) => cursor = Some(key),
                None => break,
            }
            assert!(pages < 100, "the walk ends");
        }
        assert_eq!(
            found,
            ["i00", "i06", "i12", "i18", "i24", "i30", "i36", "i42", "i48", "i54"]
        );
        // A page of 2 needs at most 13 instances read, so the budget of 25 never cuts one
        // short here: 5 full pages, the last one learning that nothing follows.
        assert_eq!(pages, 5);

        // A budget smaller than the gap between matches: short and empty pages, nothing lost.
        let mut found = Vec::new();
        let mut cursor = None;
        let mut empty_pages = 0;
        loop {
            let (page, next) = scan_page(&store, "w/", cursor, 2, 4, on_n1).await.unwrap();
            empty_pages += usize::from(page.is_empty());
            found.extend(page.into_iter().map(|i| i.id.to_string()));
            match next {
                Some(key) => cursor = Some(key),
                None => break,
            }
        }
        assert_eq!(found.len(), 10);
        assert!(empty_pages > 0, "the budget cut some pages short");
    }

    #[tokio::test]
    async fn a_page_that_ends_with_the_instances_has_no_cursor() {
        let store = store().await;
        let (page, next) = scan_page(&store, "w/", None, 100, 1000, on_n1)
            .await
            .unwrap();
        assert_eq!((page.len(), next), (10, None));
        // Exactly `limit` matches and then nothing: the scan reads to the end to know.
        let (page, next) = scan_page(&store, "w/", None, 10, 1000, on_n1)
            .await
            .unwrap();
        assert_eq!((page.len(), next), (10, None));
        let (page, next) = scan_page(&store, "w/", None, 9, 1000, on_n1).await.unwrap();
        assert_eq!(page.len(), 9);
        assert_eq!(next.as_deref(), Some("w/i53"), "the last instance scanned");
        let (page, next) = scan_page(&store, "x/", None, 5, 1000, on_n1).await.unwrap();
        assert_eq!((page.len(), next), (0, None));
    }
}
