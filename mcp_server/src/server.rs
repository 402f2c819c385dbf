//! The MCP `ServerHandler`: server info and instructions, the read-only gate in front of the
//! tool router, the prompt router, and the resources.

use crate::{OrchestratorMcp, MUTATING_TOOLS};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{prompt_handler, tool_handler, ErrorData, RoleServer, ServerHandler};

/// What a model is told about this server when it connects.
const INSTRUCTIONS: &str = "\
Runs a container orchestrator cluster: workloads (replicated groups of containers) placed on nodes \
by a bin-packing scheduler. Start with cluster_status, then list_workloads / get_workload. \
When replicas are pending, explain_pending gives the scheduler's reasons; before deploying, \
plan_deployment shows where replicas would go without changing anything. Changes \
(deploy_workload, apply_manifest, scale_workload) converge in the background: follow them with \
get_workload or list_events. delete_workload, drain_node and scaling to 0 need confirm: true: \
ask the user first. Lists are paged: pass back the `continue` token for more. Results are \
compact; detail: true adds full records. Errors carry the API's message and field paths: fix \
the named fields and call again.";

/// Said instead when the server is read-only.
const READ_ONLY: &str = " This server is READ-ONLY: it can observe and plan, not change the \
cluster; suggest changes for the user to make.";

impl OrchestratorMcp {
    /// This server, calling the API with the token of the HTTP request being served (the
    /// streamable HTTP endpoint of `orchestratord --mcp`), so that the API checks the caller's
    /// role and names them in its audit log. Over stdio, or without the header, it keeps its
    /// own token.
    fn for_caller(&self, context: &RequestContext<RoleServer>) -> OrchestratorMcp {
        #[cfg(feature = "http")]
        if let Some(token) = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return OrchestratorMcp {
                api: self.api.with_token(Some(token.trim().to_owned())),
                ..self.clone()
            };
        }
        #[cfg(not(feature = "http"))]
        let _ = context;
        self.clone()
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for OrchestratorMcp {
    fn get_info(&self) -> ServerConfig {
        let mut instructions = INSTRUCTIONS.to_owned();
        if self.options.read_only {
            instructions.push_str(READ_ONLY);
        }
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
        .with_server_info(
            Implementation::new("orchestrator-mcp", env!("CARGO_PKG_VERSION"))
                .with_title("Container orchestrator"),
        )
        .with_instructions(instructions)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // A mutating tool is not even listed in read-only mode; a client that calls it anyway
        // (from an old listing, or by guessing) gets a clear refusal, not "tool not found".
        if self.options.read_only && MUTATING_TOOLS.contains(&request.name.as_ref()) {
            return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                "{} is not available: this MCP server is read-only (started with --read-only), \
                 so it cannot change the cluster. Tell the user what to change instead.",
                request.name
            ))])
            .into());
        }
        tracing::debug!(tool = %request.name, "tool call");
        let this = self.for_caller(&context);
        let context = ToolCallContext::new(&this, request, context);
        this.tool_router.call(context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        crate::resources::list(&self.for_caller(&context), request.and_then(|r| r.cursor)).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            crate::resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        crate::resources::read(&self.for_caller(&context), &request.uri)
            .await
            .map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use crate::{ApiClient, Options, OrchestratorMcp, MUTATING_TOOLS};

    fn server(read_only: bool) -> OrchestratorMcp {
        OrchestratorMcp::new(
            ApiClient::new("http://127.0.0.1:1", None).unwrap(),
            Options {
                read_only,
                ..Options::default()
            },
        )
    }

    #[test]
    fn mutating_tools_are_exactly_those_not_marked_read_only() {
        let s = server(false);
        let mut mutating: Vec<String> = s
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true))
            .map(|t| t.name.into_owned())
            .collect();
        mutating.sort();
        let mut expected: Vec<String> = MUTATING_TOOLS.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(mutating, expected);
    }

    #[test]
    fn every_tool_has_a_description_schemas_and_annotations() {
        for t in server(false).tool_router.list_all() {
            let d = t.description.as_deref().unwrap_or("");
            assert!(d.len() > 80, "{}: description too short: {d:?}", t.name);
            assert!(t.output_schema.is_some(), "{} has no output schema", t.name);
            assert!(t.annotations.is_some(), "{} has no annotations", t.name);
            assert_eq!(
                t.input_schema.get("type"),
                Some(&serde_json::json!("object"))
            );
        }
    }

    #[test]
    fn deploy_schema_is_derived_from_the_shared_types() {
        use orchestrator_shared_types::{PlacementStrategy, Protocol, RestartPolicy};
        let tools = server(false).tool_router.list_all();
        let deploy = tools.iter().find(|t| t.name == "deploy_workload").unwrap();
        let defs = &deploy.input_schema["$defs"];
        let consts = |name: &str| -> Vec<String> {
            defs[name]["oneOf"]
                .as_array()
                .unwrap_or_else(|| panic!("no {name} in {defs}"))
                .iter()
                .map(|v| v["const"].as_str().unwrap().to_owned())
                .collect()
        };
        // The schema offers exactly what serde accepts: the same spellings, from one type.
        let spelled = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        assert_eq!(
            consts("PlacementStrategy"),
            [
                PlacementStrategy::BinPack,
                PlacementStrategy::Spread,
                PlacementStrategy::OnePerNode
            ]
            .map(|p| spelled(serde_json::to_value(p).unwrap()))
        );
        assert_eq!(
            consts("RestartPolicy"),
            [
                RestartPolicy::Always,
                RestartPolicy::OnFailure,
                RestartPolicy::Never
            ]
            .map(|r| spelled(serde_json::to_value(r).unwrap()))
        );
        assert_eq!(
            consts("Protocol"),
            [Protocol::Tcp, Protocol::Udp].map(|p| spelled(serde_json::to_value(p).unwrap()))
        );
        let port = &defs["PortMapping"];
        assert_eq!(port["additionalProperties"], serde_json::json!(false));
        assert_eq!(port["required"], serde_json::json!(["container_port"]));
        assert_eq!(
            deploy.input_schema["properties"]["ports"]["items"]["$ref"],
            serde_json::json!("#/$defs/PortMapping")
        );
    }

    #[test]
    fn read_only_lists_no_mutating_tool() {
        let names = server(true).tool_names();
        assert!(!names.is_empty());
        for m in MUTATING_TOOLS {
            assert!(
                !names.iter().any(|n| n == m),
                "{m} listed in read-only mode"
            );
        }
        assert_eq!(
            server(false).tool_names().len(),
            names.len() + MUTATING_TOOLS.len()
        );
    }
}
