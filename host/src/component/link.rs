//! A guest's `distlock` import served by a lock component instance in the same store: each
//! import is a host function that calls the matching export of the lock component
//! (instance to instance, through the host's `Linker`). The acquires call the lock
//! component's `linking` exports instead, which answer with the lease's token as well: one
//! call into the lock component per acquire, not a second one for the token.
//!
//! The guest holds host resources ([`LinkedClient`], [`LinkedLease`], [`LinkedComputation`],
//! in `resources.rs`) that wrap the lock
//! component's own handles; dropping one drops the wrapped handle, so the lock component's
//! destructor runs (a dropped lease releases its lock there). Each lease also keeps what a
//! release needs (name, token, shape or set of names, nodes, prefix), so the host can release it natively if the
//! guest ends without dropping it, even when the lock component itself cannot be called
//! any more (it ran out of time inside a call, say). Each computation keeps its name and token
//! the same way, so the host gives it up natively when the guest ends before it ended; a
//! computation the guest drops unfinished is dropped in the lock component (which gives it
//! up at its client's next call, without I/O in the destructor) and stays in the store, so
//! the host gives it up too if the guest ends first.

use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{ComponentType, Linker, Lower, Resource, ResourceAny, ResourceType};

use super::bindings::provider::exports::distlock::lock::distlock::{
    Config, ConfigError, ConfigErrorKind, Error, Fetched as ProviderFetched, Shape,
};
use super::bindings::provider::exports::distlock::lock::linking::Held as ProviderHeld;
use super::net::{ConfigRefusal, Net};
use super::resources::{ClientSpec, Held, LinkedClient, LinkedComputation, LinkedLease};
use super::state::HostState;

/// The interface the functions below serve.
const INTERFACE: &str = "distlock:lock/distlock@0.1.0";

type Cx<'a> = StoreContextMut<'a, HostState>;

/// `fetched`, as the guest receives it: the lock component's computation wrapped.
#[derive(ComponentType, Lower)]
#[component(variant)]
enum Fetched {
    #[component(name = "value")]
    Value(Vec<u8>),
    #[component(name = "computing")]
    Computing(Resource<LinkedComputation>),
}

/// Defines the `distlock` interface in `linker` as calls into the store's lock component.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    i.resource(
        "client",
        ResourceType::host::<LinkedClient>(),
        |mut cx: Cx<'_>, rep| {
            let client = cx
                .data_mut()
                .table
                .delete(Resource::<LinkedClient>::new_own(rep))?;
            client.inner.resource_drop(&mut cx)
        },
    )?;
    i.resource(
        "lease",
        ResourceType::host::<LinkedLease>(),
        |mut cx: Cx<'_>, rep| {
            let lease = cx
                .data_mut()
                .table
                .delete(Resource::<LinkedLease>::new_own(rep))?;
            // The lock component's destructor releases the lock unless it was released.
            lease.inner.resource_drop(&mut cx)
        },
    )?;

    i.resource(
        "computation",
        ResourceType::host::<LinkedComputation>(),
        |mut cx: Cx<'_>, rep| {
            let mut computation = cx
                .data_mut()
                .table
                .delete(Resource::<LinkedComputation>::new_own(rep))?;
            // Kept for the guest's end: the lock component gives it up at its client's next
            // call, the host when the guest ends, whichever comes first (giving up twice
            // finds the lock no longer this token's, and changes nothing).
            if let Some(record) = computation.take_record() {
                cx.data_mut().dropped_computations.push(record);
            }
            // No network I/O: the lock component only queues it.
            computation.inner.resource_drop(&mut cx)
        },
    )?;

    i.func_wrap(
        "[static]client.open",
        |mut cx: Cx<'_>, (mut config,): (Config,)| {
            let api = cx.data().provider()?;
            if let Err(refused) = settle(&cx.data().net, &mut config) {
                return Ok((Err(refused),));
            }
            // The options the lock component takes its locks with: a lease the guest leaves
            // behind is released with them (a fair lock's release hands the lock on). A config
            // they refuse is refused by the component too, so no lease comes of it.
            let options = distlock_core::wit::LockSettings {
                fenced: config.fenced,
                fair: config.fair,
                no_scripts: config.no_scripts,
                ttl_ms: config.ttl_ms,
                request_timeout_ms: config.request_timeout_ms,
            }
            .options()
            .unwrap_or_default();
            let spec = Arc::new(ClientSpec {
                nodes: config.nodes.clone(),
                prefix: config.key_prefix.clone(),
                options,
            });
            Ok((match api.client().call_open(&mut cx, &config)? {
                Ok(inner) => Ok(cx.data_mut().table.push(LinkedClient { inner, spec })?),
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]client.acquire",
        |cx: Cx<'_>, (client, name, wait_ms): (Resource<LinkedClient>, String, u64)| {
            acquire(cx, &client, name, Some(wait_ms))
        },
    )?;
    i.func_wrap(
        "[method]client.try-acquire",
        |cx: Cx<'_>, (client, name): (Resource<LinkedClient>, String)| {
            acquire(cx, &client, name, None)
        },
    )?;
    i.func_wrap(
        "[method]client.acquire-shaped",
        |cx: Cx<'_>,
         (client, name, shape, wait_ms): (Resource<LinkedClient>, String, Shape, u64)| {
            acquire_shaped(cx, &client, name, shape, wait_ms)
        },
    )?;

    i.func_wrap(
        "[method]client.acquire-many",
        |cx: Cx<'_>, (client, names, wait_ms): (Resource<LinkedClient>, Vec<String>, u64)| {
            acquire_many(cx, &client, names, wait_ms)
        },
    )?;

    i.func_wrap(
        "[method]client.get-or-lock",
        |cx: Cx<'_>, (client, name, wait_ms): (Resource<LinkedClient>, String, u64)| {
            get_or_lock(cx, &client, name, wait_ms)
        },
    )?;

    i.func_wrap(
        "[method]computation.name",
        |cx: Cx<'_>, (computation,): (Resource<LinkedComputation>,)| {
            Ok((cx.data().table.get(&computation)?.name.clone(),))
        },
    )?;
    i.func_wrap(
        "[method]computation.token",
        |cx: Cx<'_>, (computation,): (Resource<LinkedComputation>,)| {
            Ok((cx.data().table.get(&computation)?.token.clone(),))
        },
    )?;
    i.func_wrap(
        "[method]computation.validity-ms",
        |mut cx: Cx<'_>, (computation,): (Resource<LinkedComputation>,)| {
            let (api, inner) = inner_computation(&cx, &computation)?;
            Ok((api.computation().call_validity_ms(&mut cx, inner)?,))
        },
    )?;
    i.func_wrap(
        "[method]computation.extend",
        |mut cx: Cx<'_>, (computation, ttl_ms): (Resource<LinkedComputation>, u64)| {
            let (api, inner) = inner_computation(&cx, &computation)?;
            Ok((api.computation().call_extend(&mut cx, inner, ttl_ms)?,))
        },
    )?;
    i.func_wrap(
        "[method]computation.renew",
        |mut cx: Cx<'_>, (computation,): (Resource<LinkedComputation>,)| {
            let (api, inner) = inner_computation(&cx, &computation)?;
            Ok((api.computation().call_renew(&mut cx, inner)?,))
        },
    )?;
    i.func_wrap(
        "[method]computation.store",
        |mut cx: Cx<'_>,
         (computation, value, value_ttl_ms): (Resource<LinkedComputation>, Vec<u8>, u64)| {
            let (api, inner) = inner_computation(&cx, &computation)?;
            let stored = api
                .computation()
                .call_store(&mut cx, inner, &value, value_ttl_ms)?;
            // A store refused before it was sent (`invalid`) leaves the computation going.
            if !matches!(stored, Err(Error::Invalid(_))) {
                cx.data_mut().table.get_mut(&computation)?.done = true;
            }
            Ok((stored,))
        },
    )?;
    i.func_wrap(
        "[method]computation.abandon",
        |mut cx: Cx<'_>, (computation,): (Resource<LinkedComputation>,)| {
            let (api, inner) = inner_computation(&cx, &computation)?;
            let abandoned = api.computation().call_abandon(&mut cx, inner)?;
            if !matches!(abandoned, Err(Error::Invalid(_))) {
                cx.data_mut().table.get_mut(&computation)?.done = true;
            }
            Ok((abandoned,))
        },
    )?;

    i.func_wrap(
        "[method]lease.name",
        |cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            Ok((cx.data().table.get(&lease)?.name.clone(),))
        },
    )?;
    i.func_wrap(
        "[method]lease.token",
        |cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            Ok((cx.data().table.get(&lease)?.token.clone(),))
        },
    )?;
    i.func_wrap(
        "[method]lease.fence",
        |mut cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            let (api, inner) = (cx.data().provider()?, cx.data().table.get(&lease)?.inner);
            Ok((api.lease().call_fence(&mut cx, inner)?,))
        },
    )?;
    i.func_wrap(
        "[method]lease.validity-ms",
        |mut cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            let (api, inner) = (cx.data().provider()?, cx.data().table.get(&lease)?.inner);
            Ok((api.lease().call_validity_ms(&mut cx, inner)?,))
        },
    )?;
    i.func_wrap(
        "[method]lease.extend",
        |mut cx: Cx<'_>, (lease, ttl_ms): (Resource<LinkedLease>, u64)| {
            let (api, inner) = (cx.data().provider()?, cx.data().table.get(&lease)?.inner);
            Ok((api.lease().call_extend(&mut cx, inner, ttl_ms)?,))
        },
    )?;
    i.func_wrap(
        "[method]lease.renew",
        |mut cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            let (api, inner) = (cx.data().provider()?, cx.data().table.get(&lease)?.inner);
            Ok((api.lease().call_renew(&mut cx, inner)?,))
        },
    )?;
    i.func_wrap(
        "[method]lease.release",
        |mut cx: Cx<'_>, (lease,): (Resource<LinkedLease>,)| {
            let (api, inner) = (cx.data().provider()?, cx.data().table.get(&lease)?.inner);
            let released = api.lease().call_release(&mut cx, inner)?;
            // Tried, whatever the answer: nothing is left for the host to release.
            cx.data_mut().table.get_mut(&lease)?.done = true;
            Ok((released,))
        },
    )?;
    Ok(())
}

/// Puts a config for the lock component under the runtime's key settings
/// ([`Net::settle_config`]): the runtime's prefix and scripts mode reach the component
/// through the client's config, the way it takes them; a config naming others is refused
/// with the `invalid` error the guest gets.
pub(crate) fn settle(net: &Net, config: &mut Config) -> Result<(), Error> {
    net.settle_config(&mut config.key_prefix, &mut config.no_scripts)
        .map_err(|(refusal, message)| {
            let kind = match refusal {
                ConfigRefusal::BadPrefix => ConfigErrorKind::BadPrefix,
                ConfigRefusal::NeedsScripts => ConfigErrorKind::NeedsScripts,
            };
            Error::Invalid(ConfigError { kind, message })
        })
}

/// `acquire` (`wait_ms` given) or `try-acquire` (one attempt: a wait of 0), forwarded as
/// the lock component's `linking.acquire-held` of shape `lock`.
fn acquire(
    mut cx: Cx<'_>,
    client: &Resource<LinkedClient>,
    name: String,
    wait_ms: Option<u64>,
) -> wasmtime::Result<(Result<Resource<LinkedLease>, Error>,)> {
    let linking = cx.data().linking()?;
    let inner = cx.data().table.get(client)?.inner;
    let acquired =
        linking.call_acquire_held(&mut cx, inner, &name, Shape::Lock, wait_ms.unwrap_or(0))?;
    keep(
        cx,
        client,
        name,
        Held::Shaped(distlock_core::wit::Shape::Lock),
        acquired,
    )
}

/// `acquire-shaped`, forwarded; the lease remembers its shape for a native release.
fn acquire_shaped(
    mut cx: Cx<'_>,
    client: &Resource<LinkedClient>,
    name: String,
    shape: Shape,
    wait_ms: u64,
) -> wasmtime::Result<(Result<Resource<LinkedLease>, Error>,)> {
    let linking = cx.data().linking()?;
    let inner = cx.data().table.get(client)?.inner;
    let kept = Held::Shaped(core_shape(&shape));
    let acquired = linking.call_acquire_held(&mut cx, inner, &name, shape, wait_ms)?;
    keep(cx, client, name, kept, acquired)
}

/// `acquire-many`, forwarded; the lease remembers the names for a native release.
fn acquire_many(
    mut cx: Cx<'_>,
    client: &Resource<LinkedClient>,
    names: Vec<String>,
    wait_ms: u64,
) -> wasmtime::Result<(Result<Resource<LinkedLease>, Error>,)> {
    let linking = cx.data().linking()?;
    let inner = cx.data().table.get(client)?.inner;
    let acquired = linking.call_acquire_many_held(&mut cx, inner, &names, wait_ms)?;
    keep(cx, client, names.join(", "), Held::Many(names), acquired)
}

/// `get-or-lock`, forwarded; a computation remembers its name and token for a native give-up.
fn get_or_lock(
    mut cx: Cx<'_>,
    client: &Resource<LinkedClient>,
    name: String,
    wait_ms: u64,
) -> wasmtime::Result<(Result<Fetched, Error>,)> {
    let api = cx.data().provider()?;
    let (inner, spec) = {
        let client = cx.data().table.get(client)?;
        (client.inner, Arc::clone(&client.spec))
    };
    let inner = match api
        .client()
        .call_get_or_lock(&mut cx, inner, &name, wait_ms)?
    {
        Ok(ProviderFetched::Value(value)) => return Ok((Ok(Fetched::Value(value)),)),
        Ok(ProviderFetched::Computing(inner)) => inner,
        Err(e) => return Ok((Err(e),)),
    };
    let token = api.computation().call_token(&mut cx, inner)?;
    let computation = LinkedComputation {
        inner,
        name,
        token,
        spec,
        done: false,
    };
    Ok((Ok(Fetched::Computing(
        cx.data_mut().table.push(computation)?,
    )),))
}

/// The lock component's exports and its handle of a linked computation.
fn inner_computation(
    cx: &Cx<'_>,
    computation: &Resource<LinkedComputation>,
) -> wasmtime::Result<(
    super::bindings::provider::exports::distlock::lock::distlock::Guest,
    ResourceAny,
)> {
    Ok((
        cx.data().provider()?,
        cx.data().table.get(computation)?.inner,
    ))
}

/// The lock component's answer to an acquire, its lease wrapped for the guest. The answer
/// carries the lease's token (`linking`), kept host-side with the rest of what a native
/// release needs if the guest never drops the lease.
fn keep(
    mut cx: Cx<'_>,
    client: &Resource<LinkedClient>,
    name: String,
    held: Held,
    acquired: Result<ProviderHeld, Error>,
) -> wasmtime::Result<(Result<Resource<LinkedLease>, Error>,)> {
    let spec = Arc::clone(&cx.data().table.get(client)?.spec);
    let ProviderHeld { lease, token } = match acquired {
        Ok(held) => held,
        Err(e) => return Ok((Err(e),)),
    };
    let lease = LinkedLease {
        inner: lease,
        name,
        token,
        held,
        spec,
        done: false,
    };
    Ok((Ok(cx.data_mut().table.push(lease)?),))
}

// The interface's `shape` as the core's, case for case.
distlock_core::wit_shape_conversion!(super::bindings::provider::exports::distlock::lock::distlock);
