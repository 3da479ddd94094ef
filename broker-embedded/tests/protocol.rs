//! The Kafka wire-protocol server spoken to with raw frames (the `kafka-protocol` crate's
//! client-side encoders): API versions, metadata with auto-creation, produce and fetch, list
//! offsets, admin APIs, and hostile input that must close one connection and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use broker_embedded::record::{decode_records, encode_batch, BatchSpec, Record};
use broker_embedded::{Broker, BrokerConfig, KafkaServer, ServerConfig};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Harness {
    _dir: tempfile::TempDir,
    broker: Broker,
    server: Option<KafkaServer>,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    c.num_partitions = 2;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            max_frame_bytes: 1 << 20,
            frame_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    Harness {
        _dir: dir,
        broker,
        server: Some(server),
    }
}

impl Harness {
    fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }
    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr()).await.unwrap()
    }
}

async fn call<Req: Encodable, Resp: Decodable>(
    s: &mut TcpStream,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    let mut buf = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 42;
    header.client_id = Some(StrBytes::from_static_str("protocol-test"));
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    s.write_all(&(buf.len() as i32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&buf).await.unwrap();
    let mut resp = read_frame(s).await.expect("a response");
    let hv = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let rh = ResponseHeader::decode(&mut resp, hv).unwrap();
    assert_eq!(rh.correlation_id, 42);
    Resp::decode(&mut resp, version).unwrap()
}

async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut size))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

/// True if the server closed the connection (read returns EOF or reset).
async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn batch(n: usize) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            offset: i as i64,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
        })
        .collect();
    Bytes::from(encode_batch(&BatchSpec::default(), &recs).unwrap())
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

#[tokio::test]
async fn api_versions_advertises_only_what_is_implemented() {
    let h = start().await;
    let mut s = h.connect().await;
    let r: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    let find = |k: ApiKey| {
        r.api_keys
            .iter()
            .find(|v| v.api_key == k as i16)
            .map(|v| (v.min_version, v.max_version))
    };
    assert_eq!(find(ApiKey::Produce), Some((3, 9)));
    assert_eq!(find(ApiKey::Fetch), Some((4, 12)));
    assert_eq!(find(ApiKey::EndTxn), Some((0, 4)));
    assert_eq!(find(ApiKey::AddPartitionsToTxn), Some((0, 3)));
    assert_eq!(
        find(ApiKey::WriteTxnMarkers),
        None,
        "not implemented, not advertised"
    );
    assert_eq!(find(ApiKey::FindCoordinator), Some((0, 3)));
    assert_eq!(find(ApiKey::JoinGroup), Some((0, 7)));
    assert_eq!(find(ApiKey::OffsetDelete), Some((0, 0)));
    // An ApiVersions version from the future gets UNSUPPORTED_VERSION in a v0 response.
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    buf.extend_from_slice(&99i16.to_be_bytes());
    buf.extend_from_slice(&7i32.to_be_bytes());
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    s.write_all(&(buf.len() as i32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&buf).await.unwrap();
    let mut resp = read_frame(&mut s).await.unwrap();
    ResponseHeader::decode(&mut resp, 0).unwrap();
    let r = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(
        r.error_code,
        kafka_protocol::ResponseError::UnsupportedVersion.code()
    );
    assert!(!r.api_keys.is_empty());
}

#[tokio::test]
async fn metadata_produce_fetch_and_list_offsets() {
    let h = start().await;
    let mut s = h.connect().await;
    // Metadata for an unknown topic auto-creates it with num.partitions.
    let mut mreq = MetadataRequest::default();
    let mut mt = metadata_request::MetadataRequestTopic::default();
    mt.name = Some(topic("auto"));
    mreq.topics = Some(vec![mt]);
    mreq.allow_auto_topic_creation = true;
    let m: MetadataResponse = call(&mut s, ApiKey::Metadata, 12, &mreq).await;
    assert_eq!(m.brokers.len(), 1);
    assert_eq!(m.brokers[0].port as u16, h.addr().port());
    assert_eq!(m.controller_id.0, 0);
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].partitions.len(), 2);
    assert_eq!(m.topics[0].topic_id, h.broker.topic_id("auto").unwrap());

    // Produce v9 (flexible) and v3.
    for version in [9i16, 3] {
        let mut preq = ProduceRequest::default();
        preq.acks = -1;
        preq.timeout_ms = 1000;
        let mut td = produce_request::TopicProduceData::default();
        td.name = topic("auto");
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = 1;
        pd.records = Some(batch(3));
        td.partition_data = vec![pd];
        preq.topic_data = vec![td];
        let p: ProduceResponse = call(&mut s, ApiKey::Produce, version, &preq).await;
        let pr = &p.responses[0].partition_responses[0];
        assert_eq!(pr.error_code, 0);
        assert_eq!(pr.base_offset, if version == 9 { 0 } else { 3 });
    }
    // A produce to a partition that does not exist is a per-partition error.
    let mut preq = ProduceRequest::default();
    preq.acks = 1;
    let mut td = produce_request::TopicProduceData::default();
    td.name = topic("auto");
    let mut pd = produce_request::PartitionProduceData::default();
    pd.index = 9;
    pd.records = Some(batch(1));
    td.partition_data = vec![pd];
    preq.topic_data = vec![td];
    let p: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &preq).await;
    assert_eq!(
        p.responses[0].partition_responses[0].error_code,
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code()
    );

    // Fetch everything back.
    let mut freq = FetchRequest::default();
    freq.max_wait_ms = 100;
    freq.min_bytes = 1;
    freq.max_bytes = 1 << 20;
    freq.replica_id = BrokerId(-1);
    let mut ft = fetch_request::FetchTopic::default();
    ft.topic = topic("auto");
    let mut fp = fetch_request::FetchPartition::default();
    fp.partition = 1;
    fp.fetch_offset = 0;
    fp.partition_max_bytes = 1 << 20;
    ft.partitions = vec![fp];
    freq.topics = vec![ft];
    let f: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &freq).await;
    let pd = &f.responses[0].partitions[0];
    assert_eq!(pd.error_code, 0);
    assert_eq!(pd.high_watermark, 6);
    let records = pd.records.clone().unwrap();
    let mut offsets = Vec::new();
    for b in broker_embedded::record::BatchIter::new(&records) {
        for r in decode_records(b.unwrap().bytes).unwrap() {
            offsets.push(r.offset);
        }
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);

    // A fetch beyond the end is OFFSET_OUT_OF_RANGE; at the end it long-polls until max_wait.
    freq.topics[0].partitions[0].fetch_offset = 7;
    let f: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &freq).await;
    assert_eq!(
        f.responses[0].partitions[0].error_code,
        kafka_protocol::ResponseError::OffsetOutOfRange.code()
    );
    freq.topics[0].partitions[0].fetch_offset = 6;
    let t = std::time::Instant::now();
    let f: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &freq).await;
    assert!(t.elapsed() >= Duration::from_millis(90));
    assert_eq!(
        f.responses[0].partitions[0]
            .records
            .as_ref()
            .map(|r| r.len()),
        Some(0)
    );

    // ListOffsets: earliest, latest, by timestamp.
    let mut lreq = ListOffsetsRequest::default();
    lreq.replica_id = BrokerId(-1);
    let mut lt = list_offsets_request::ListOffsetsTopic::default();
    lt.name = topic("auto");
    lt.partitions = [-2i64, -1, 1_001]
        .iter()
        .map(|ts| {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = 1;
            p.timestamp = *ts;
            p
        })
        .collect();
    lreq.topics = vec![lt];
    let l: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, 6, &lreq).await;
    let got: Vec<i64> = l.topics[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(got, vec![0, 6, 1]);
}

#[tokio::test]
async fn admin_apis_create_describe_alter_delete() {
    let h = start().await;
    let mut s = h.connect().await;
    let mut creq = CreateTopicsRequest::default();
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = topic("orders");
    ct.num_partitions = 3;
    ct.replication_factor = 1;
    let mut cfg = create_topics_request::CreatableTopicConfig::default();
    cfg.name = StrBytes::from_static_str("cleanup.policy");
    cfg.value = Some(StrBytes::from_static_str("compact"));
    ct.configs = vec![cfg];
    let mut bad = create_topics_request::CreatableTopic::default();
    bad.name = topic("too-many-replicas");
    bad.num_partitions = 1;
    bad.replication_factor = 3;
    creq.topics = vec![ct, bad];
    let c: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 7, &creq).await;
    assert_eq!(c.topics[0].error_code, 0);
    assert_eq!(c.topics[0].topic_id, h.broker.topic_id("orders").unwrap());
    assert_eq!(
        c.topics[1].error_code,
        kafka_protocol::ResponseError::InvalidReplicationFactor.code()
    );

    let mut dreq = DescribeConfigsRequest::default();
    let mut res = describe_configs_request::DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_static_str("orders");
    dreq.resources = vec![res];
    let d: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, 4, &dreq).await;
    let cp = d.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .unwrap();
    assert_eq!(cp.value.as_ref().unwrap().as_str(), "compact");
    assert_eq!(cp.config_source, 1);

    // Incremental: APPEND delete to the cleanup.policy list; unknown keys are rejected.
    let mut ireq = IncrementalAlterConfigsRequest::default();
    let mut ir = incremental_alter_configs_request::AlterConfigsResource::default();
    ir.resource_type = 2;
    ir.resource_name = StrBytes::from_static_str("orders");
    let mut op = incremental_alter_configs_request::AlterableConfig::default();
    op.name = StrBytes::from_static_str("cleanup.policy");
    op.config_operation = 2;
    op.value = Some(StrBytes::from_static_str("delete"));
    ir.configs = vec![op];
    ireq.resources = vec![ir];
    let i: IncrementalAlterConfigsResponse =
        call(&mut s, ApiKey::IncrementalAlterConfigs, 1, &ireq).await;
    assert_eq!(i.responses[0].error_code, 0);
    let desc = h.broker.describe_topic("orders").unwrap();
    assert_eq!(
        desc.configs
            .iter()
            .find(|c| c.name == "cleanup.policy")
            .unwrap()
            .value,
        "compact,delete"
    );

    let mut areq = AlterConfigsRequest::default();
    let mut ar = alter_configs_request::AlterConfigsResource::default();
    ar.resource_type = 2;
    ar.resource_name = StrBytes::from_static_str("orders");
    let mut ac = alter_configs_request::AlterableConfig::default();
    ac.name = StrBytes::from_static_str("retention.mss");
    ac.value = Some(StrBytes::from_static_str("1"));
    ar.configs = vec![ac];
    areq.resources = vec![ar];
    let a: AlterConfigsResponse = call(&mut s, ApiKey::AlterConfigs, 2, &areq).await;
    assert_eq!(
        a.responses[0].error_code,
        kafka_protocol::ResponseError::InvalidConfig.code()
    );

    let mut preq = CreatePartitionsRequest::default();
    let mut pt = create_partitions_request::CreatePartitionsTopic::default();
    pt.name = topic("orders");
    pt.count = 5;
    preq.topics = vec![pt];
    let p: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, 3, &preq).await;
    assert_eq!(p.results[0].error_code, 0);
    assert_eq!(h.broker.partition_count("orders").unwrap(), 5);

    let mut del = DeleteTopicsRequest::default();
    del.topic_names = vec![topic("orders"), topic("missing")];
    let d: DeleteTopicsResponse = call(&mut s, ApiKey::DeleteTopics, 5, &del).await;
    assert_eq!(d.responses[0].error_code, 0);
    assert_eq!(
        d.responses[1].error_code,
        kafka_protocol::ResponseError::UnknownTopicOrPartition.code()
    );
    assert!(!h.broker.topic_exists("orders"));
}

#[tokio::test]
async fn hostile_clients_close_their_own_connection_only() {
    let mut h = start().await;
    let mut good = h.connect().await;
    // Oversized frame, negative size, unknown API key, garbage body, half a frame then stall.
    let mut a = h.connect().await;
    a.write_all(&(1i32 << 30).to_be_bytes()).await.unwrap();
    assert!(closed(&mut a).await, "oversized frame");
    let mut b = h.connect().await;
    b.write_all(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(closed(&mut b).await, "negative size");
    let mut c = h.connect().await;
    c.write_all(&[0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    assert!(closed(&mut c).await, "unknown api key");
    let mut d = h.connect().await;
    let mut junk = vec![0u8; 64];
    junk[1] = ApiKey::Produce as u8;
    junk[3] = 9;
    for (i, byte) in junk.iter_mut().enumerate().skip(8) {
        *byte = (i * 37) as u8;
    }
    d.write_all(&(junk.len() as i32).to_be_bytes())
        .await
        .unwrap();
    d.write_all(&junk).await.unwrap();
    assert!(closed(&mut d).await, "garbage body");
    let mut e = h.connect().await;
    e.write_all(&[0, 0, 1, 0, 0, 0]).await.unwrap();
    assert!(closed(&mut e).await, "stalled mid-frame");
    // Hundreds of idle connections do not block anyone.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(h.connect().await);
    }
    let r: ApiVersionsResponse = call(
        &mut good,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(r.error_code, 0);
    drop(idle);
    h.server.take().unwrap().shutdown().await;
    assert!(closed(&mut good).await, "shutdown closes connections");
}

#[tokio::test]
async fn metadata_returns_the_advertised_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            advertised_host: Some("kafka.example.test".into()),
            advertised_port: Some(19092),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let m: MetadataResponse = call(&mut s, ApiKey::Metadata, 9, &MetadataRequest::default()).await;
    assert_eq!(m.brokers[0].host.as_str(), "kafka.example.test");
    assert_eq!(m.brokers[0].port, 19092);
    server.shutdown().await;
}

/// Every advertised version of every API gets a response that decodes: fields a version
/// lacks must not be set (the encoder refuses them), which older clients depend on (kcat with
/// librdkafka 2.0 asks for ListOffsets v2).
#[tokio::test]
async fn every_advertised_version_answers() {
    let h = start().await;
    let mut s = h.connect().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("v", 2))
        .unwrap();
    h.broker
        .produce(
            "v",
            0,
            &[broker_embedded::ProduceRecord::new("k", "v").with_timestamp(5)],
        )
        .unwrap();
    for v in 0..=3 {
        let r: ApiVersionsResponse = call(
            &mut s,
            ApiKey::ApiVersions,
            v,
            &ApiVersionsRequest::default(),
        )
        .await;
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
    }
    for v in 1..=12 {
        let mut req = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(topic("v"));
        req.topics = Some(vec![t]);
        let r: MetadataResponse = call(&mut s, ApiKey::Metadata, v, &req).await;
        assert_eq!(r.topics[0].partitions.len(), 2, "Metadata v{v}");
    }
    for v in 1..=6 {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = topic("v");
        let mut p = list_offsets_request::ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = -1;
        t.partitions = vec![p];
        req.topics = vec![t];
        let r: ListOffsetsResponse = call(&mut s, ApiKey::ListOffsets, v, &req).await;
        assert_eq!(r.topics[0].partitions[0].offset, 1, "ListOffsets v{v}");
    }
    for v in 3..=9 {
        let mut req = ProduceRequest::default();
        req.acks = 1;
        let mut td = produce_request::TopicProduceData::default();
        td.name = topic("v");
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = 1;
        pd.records = Some(batch(1));
        td.partition_data = vec![pd];
        req.topic_data = vec![td];
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, v, &req).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
    }
    for v in 4..=12 {
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_bytes = 1 << 20;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = topic("v");
        let mut fp = fetch_request::FetchPartition::default();
        fp.partition = 1;
        fp.partition_max_bytes = 1 << 20;
        ft.partitions = vec![fp];
        req.topics = vec![ft];
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, v, &req).await;
        assert!(
            r.responses[0].partitions[0]
                .records
                .as_ref()
                .is_some_and(|b| !b.is_empty()),
            "Fetch v{v}"
        );
    }
    for v in 2..=7 {
        let mut req = CreateTopicsRequest::default();
        let mut ct = create_topics_request::CreatableTopic::default();
        ct.name = topic(&format!("created-{v}"));
        ct.num_partitions = 1;
        ct.replication_factor = 1;
        req.topics = vec![ct];
        let r: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, v, &req).await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    for v in 1..=4 {
        let mut req = DescribeConfigsRequest::default();
        let mut res = describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_static_str("v");
        req.resources = vec![res];
        let r: DescribeConfigsResponse = call(&mut s, ApiKey::DescribeConfigs, v, &req).await;
        assert!(!r.results[0].configs.is_empty(), "DescribeConfigs v{v}");
    }
    for v in 0..=3 {
        let mut req = CreatePartitionsRequest::default();
        let mut pt = create_partitions_request::CreatePartitionsTopic::default();
        pt.name = topic("v");
        pt.count = 3 + i32::from(v);
        req.topics = vec![pt];
        let r: CreatePartitionsResponse = call(&mut s, ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in 0..=2 {
        let mut req = AlterConfigsRequest::default();
        let mut ar = alter_configs_request::AlterConfigsResource::default();
        ar.resource_type = 2;
        ar.resource_name = StrBytes::from_static_str("v");
        let mut ac = alter_configs_request::AlterableConfig::default();
        ac.name = StrBytes::from_static_str("retention.ms");
        ac.value = Some(StrBytes::from_static_str("1000"));
        ar.configs = vec![ac];
        req.resources = vec![ar];
        let r: AlterConfigsResponse = call(&mut s, ApiKey::AlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    for v in 0..=1 {
        let mut req = IncrementalAlterConfigsRequest::default();
        let mut ir = incremental_alter_configs_request::AlterConfigsResource::default();
        ir.resource_type = 2;
        ir.resource_name = StrBytes::from_static_str("v");
        let mut op = incremental_alter_configs_request::AlterableConfig::default();
        op.name = StrBytes::from_static_str("retention.ms");
        op.config_operation = 1;
        ir.configs = vec![op];
        req.resources = vec![ir];
        let r: IncrementalAlterConfigsResponse =
            call(&mut s, ApiKey::IncrementalAlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in 0..=4 {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, v, &req).await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0);
    }
    for v in 0..=3 {
        let mut req = FindCoordinatorRequest::default();
        req.key = StrBytes::from_static_str("g");
        let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, v, &req).await;
        assert_eq!((r.error_code, r.node_id.0), (0, 0), "FindCoordinator v{v}");
    }
    for v in 2..=8 {
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("g"));
        req.generation_id_or_member_epoch = -1;
        let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
        t.name = topic("v");
        let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = i64::from(v);
        p.committed_metadata = Some(StrBytes::from_static_str("m"));
        t.partitions = vec![p];
        req.topics = vec![t];
        let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, v, &req).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    for v in 1..=7 {
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("g"));
        let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
        t.name = topic("v");
        t.partition_indexes = vec![0, 1];
        req.topics = Some(vec![t]);
        let r: OffsetFetchResponse = call(&mut s, ApiKey::OffsetFetch, v, &req).await;
        let got: Vec<i64> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(got, vec![8, -1], "OffsetFetch v{v}");
    }
    // A commit that claims a membership the group does not know is refused.
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_static_str("g"));
    req.generation_id_or_member_epoch = 3;
    req.member_id = StrBytes::from_static_str("member-1");
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = topic("v");
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.committed_offset = 1;
    t.partitions = vec![p];
    req.topics = vec![t];
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 8, &req).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        kafka_protocol::ResponseError::UnknownMemberId.code()
    );
    let committed = h
        .broker
        .committed_offset("g", &broker_embedded::TopicPartition::new("v", 0));
    assert_eq!(committed.unwrap().offset, 8);
    {
        let mut req = OffsetDeleteRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("g"));
        let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
        t.name = topic("v");
        let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
        p.partition_index = 0;
        t.partitions = vec![p];
        req.topics = vec![t];
        let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
        assert_eq!(
            (r.error_code, r.topics[0].partitions[0].error_code),
            (0, 0),
            "OffsetDelete v0"
        );
    }
    for v in 1..=6 {
        let mut req = DeleteTopicsRequest::default();
        let name = format!("created-{}", v + 1);
        if v >= 6 {
            let mut t = delete_topics_request::DeleteTopicState::default();
            t.name = Some(topic(&name));
            req.topics = vec![t];
        } else {
            req.topic_names = vec![topic(&name)];
        }
        let r: DeleteTopicsResponse = call(&mut s, ApiKey::DeleteTopics, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
}

/// Many misbehaving clients at once (garbage, half frames, disconnects mid-request, oversized
/// sizes) while a well-behaved client produces and fetches: the good client sees no error and
/// loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_do_not_disturb_a_good_one() {
    let h = start().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("good", 1))
        .unwrap();
    let addr = h.addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut vandals = Vec::new();
    for v in 0..24u32 {
        let stop = std::sync::Arc::clone(&stop);
        vandals.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    continue;
                };
                let junk: Vec<u8> = (0..64u32)
                    .map(|i| (i.wrapping_mul(31).wrapping_add(v * 7 + n)) as u8)
                    .collect();
                let _ = match (v + n) % 4 {
                    // garbage bytes
                    0 => s.write_all(&junk).await,
                    // a valid-looking header, then half the frame and a disconnect
                    1 => {
                        let mut f = (200i32).to_be_bytes().to_vec();
                        f.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
                        f.extend_from_slice(&junk[..20]);
                        s.write_all(&f).await
                    }
                    // an absurd size
                    2 => s.write_all(&i32::MAX.to_be_bytes()).await,
                    // a produce frame with a corrupted body
                    _ => {
                        let mut f = (64i32).to_be_bytes().to_vec();
                        f.extend_from_slice(&[0, 0, 0, 9]);
                        f.extend_from_slice(&junk[..60]);
                        s.write_all(&f).await
                    }
                };
                drop(s);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut s = h.connect().await;
    let mut next_offset = 0i64;
    for i in 0..200usize {
        let mut preq = ProduceRequest::default();
        preq.acks = -1;
        let mut td = produce_request::TopicProduceData::default();
        td.name = topic("good");
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = 0;
        pd.records = Some(batch(1 + i % 3));
        td.partition_data = vec![pd];
        preq.topic_data = vec![td];
        let p: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &preq).await;
        let pr = &p.responses[0].partition_responses[0];
        assert_eq!(
            (pr.error_code, pr.base_offset),
            (0, next_offset),
            "produce {i}"
        );
        next_offset += 1 + (i % 3) as i64;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for v in vandals {
        v.await.unwrap();
    }
    // Everything acknowledged is there, in order.
    let mut fetched = 0i64;
    while fetched < next_offset {
        let mut freq = FetchRequest::default();
        freq.replica_id = BrokerId(-1);
        freq.max_bytes = 1 << 20;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = topic("good");
        let mut fp = fetch_request::FetchPartition::default();
        fp.fetch_offset = fetched;
        fp.partition_max_bytes = 1 << 20;
        ft.partitions = vec![fp];
        freq.topics = vec![ft];
        let f: FetchResponse = call(&mut s, ApiKey::Fetch, 12, &freq).await;
        let pd = &f.responses[0].partitions[0];
        assert_eq!(pd.error_code, 0);
        let records = pd.records.clone().unwrap();
        for b in broker_embedded::record::BatchIter::new(&records) {
            for r in decode_records(b.unwrap().bytes).unwrap() {
                assert_eq!(r.offset, fetched);
                fetched += 1;
            }
        }
    }
    assert_eq!(fetched, next_offset);
}

fn offset_delete(group: &str, parts: &[(&str, i32)]) -> OffsetDeleteRequest {
    let mut req = OffsetDeleteRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    for (name, p) in parts {
        let mut part = offset_delete_request::OffsetDeleteRequestPartition::default();
        part.partition_index = *p;
        match req.topics.iter_mut().find(|t| t.name.0.as_str() == *name) {
            Some(t) => t.partitions.push(part),
            None => {
                let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
                t.name = topic(name);
                t.partitions = vec![part];
                req.topics.push(t);
            }
        }
    }
    req
}

/// (topic, partition, error code) of every partition in an OffsetDelete response.
fn offset_delete_errors(r: &OffsetDeleteResponse) -> Vec<(String, i32, i16)> {
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.as_str().to_string(),
                    p.partition_index,
                    p.error_code,
                )
            })
        })
        .collect()
}

/// Starts a JoinGroup on its own connection (it completes only after the group's initial
/// rebalance delay; the member is in the group as soon as the request arrives).
async fn join_in_background(
    h: &Harness,
    group: &str,
    protocol_type: &str,
    subscribed: &[&str],
) -> tokio::task::JoinHandle<JoinGroupResponse> {
    let mut subscription = BytesMut::new();
    subscription.extend_from_slice(&1i16.to_be_bytes());
    let mut sub = consumer_protocol_subscription::ConsumerProtocolSubscription::default();
    sub.topics = subscribed
        .iter()
        .map(|t| StrBytes::from_string((*t).to_string()))
        .collect();
    sub.encode(&mut subscription, 1).unwrap();
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 10_000;
    req.protocol_type = StrBytes::from_string(protocol_type.to_string());
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = subscription.freeze();
    req.protocols = vec![p];
    let mut s = h.connect().await;
    let task = tokio::spawn(async move { call(&mut s, ApiKey::JoinGroup, 3, &req).await });
    // Until the coordinator has the member.
    for _ in 0..100 {
        let mut d = DescribeGroupsRequest::default();
        d.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
        let mut c = h.connect().await;
        let r: DescribeGroupsResponse = call(&mut c, ApiKey::DescribeGroups, 0, &d).await;
        if !r.groups[0].members.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task
}

fn commit(b: &Broker, group: &str, parts: &[(&str, i32)]) {
    let offsets: Vec<_> = parts
        .iter()
        .map(|(t, p)| {
            (
                broker_embedded::TopicPartition::new(*t, *p),
                broker_embedded::OffsetAndMetadata::new(5),
            )
        })
        .collect();
    b.commit_offsets(group, &offsets).unwrap();
}

fn remaining(b: &Broker, group: &str) -> Vec<(String, i32)> {
    b.committed_offsets(group)
        .into_keys()
        .map(|tp| (tp.topic, tp.partition))
        .collect()
}

/// OffsetDelete v0 with Kafka's semantics: unknown group, unknown topics and partitions, a
/// group without members (every offset may go, durably), an active consumer group (offsets
/// of subscribed topics are protected), and an active group of another protocol type
/// (nothing may go).
#[tokio::test]
async fn offset_delete_follows_kafkas_rules() {
    use kafka_protocol::ResponseError;
    let h = start().await;
    let b = &h.broker;
    for t in ["v", "w"] {
        b.create_topic(broker_embedded::NewTopic::new(t, 2))
            .unwrap();
    }
    let mut s = h.connect().await;

    // No such group.
    let req = offset_delete("nope", &[("v", 0)]);
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
    assert_eq!(r.error_code, ResponseError::GroupIdNotFound.code());
    assert!(r.topics.is_empty());

    // A group with offsets and no members: unknown partitions are reported, the rest go.
    commit(b, "idle", &[("v", 0), ("v", 1), ("w", 0)]);
    let req = offset_delete("idle", &[("v", 0), ("v", 7), ("missing", 0)]);
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
    assert_eq!(r.error_code, 0);
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(
        offset_delete_errors(&r),
        vec![
            ("v".into(), 0, 0),
            ("v".into(), 7, unknown),
            ("missing".into(), 0, unknown)
        ]
    );
    assert_eq!(remaining(b, "idle"), vec![("v".into(), 1), ("w".into(), 0)]);
    // Deleting an offset that is not committed is no error.
    let req = offset_delete("idle", &[("v", 0)]);
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
    assert_eq!(offset_delete_errors(&r), vec![("v".into(), 0, 0)]);
    // The deletion is durable: tombstones in __consumer_offsets survive a restart.
    let Harness {
        _dir: dir,
        broker,
        server,
    } = h;
    server.unwrap().shutdown().await;
    broker.shutdown().unwrap();
    drop(broker);
    let reopened = Broker::open(BrokerConfig::new(dir.path())).unwrap();
    assert_eq!(
        remaining(&reopened, "idle"),
        vec![("v".into(), 1), ("w".into(), 0)]
    );
    reopened.shutdown().unwrap();
    drop(reopened);

    // An active consumer group subscribed to "v": its offsets are protected, "w"'s are not.
    let h = start().await;
    let b = &h.broker;
    for t in ["v", "w"] {
        b.create_topic(broker_embedded::NewTopic::new(t, 2))
            .unwrap();
    }
    let mut s = h.connect().await;
    commit(b, "active", &[("v", 0), ("w", 0)]);
    let join = join_in_background(&h, "active", "consumer", &["v"]).await;
    let req = offset_delete("active", &[("v", 0), ("w", 0)]);
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        offset_delete_errors(&r),
        vec![
            ("v".into(), 0, ResponseError::GroupSubscribedToTopic.code()),
            ("w".into(), 0, 0)
        ]
    );
    assert_eq!(remaining(b, "active"), vec![("v".into(), 0)]);
    join.abort();

    // An active group of another protocol type: NON_EMPTY_GROUP, nothing deleted.
    commit(b, "connect", &[("w", 0)]);
    let join = join_in_background(&h, "connect", "connect", &[]).await;
    let req = offset_delete("connect", &[("w", 0)]);
    let r: OffsetDeleteResponse = call(&mut s, ApiKey::OffsetDelete, 0, &req).await;
    assert_eq!(r.error_code, ResponseError::NonEmptyGroup.code());
    assert_eq!(remaining(b, "connect"), vec![("w".into(), 0)]);
    join.abort();
}

/// KIP-467: a batch refused for null keys on a compacted topic names the records at fault in
/// `record_errors` (Produce v8+), so clients fail only those with INVALID_RECORD.
#[tokio::test]
async fn null_keys_on_a_compacted_topic_are_named_in_record_errors() {
    let h = start().await;
    h.broker
        .create_topic(
            broker_embedded::NewTopic::new("compacted", 1).config("cleanup.policy", "compact"),
        )
        .unwrap();
    let recs: Vec<Record> = (0..5)
        .map(|i| Record {
            offset: i,
            timestamp: 1_000,
            key: (i % 2 == 1).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: vec![],
        })
        .collect();
    let records = Bytes::from(encode_batch(&BatchSpec::default(), &recs).unwrap());
    let mut s = h.connect().await;
    for v in [7, 8, 9] {
        let mut req = ProduceRequest::default();
        req.acks = 1;
        let mut td = produce_request::TopicProduceData::default();
        td.name = topic("compacted");
        let mut pd = produce_request::PartitionProduceData::default();
        pd.records = Some(records.clone());
        td.partition_data = vec![pd];
        req.topic_data = vec![td];
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, v, &req).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            p.error_code,
            kafka_protocol::ResponseError::InvalidRecord.code()
        );
        let at_fault: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        let want = if v >= 8 { vec![0, 2, 4] } else { vec![] };
        assert_eq!(at_fault, want, "Produce v{v}");
    }
    assert_eq!(
        h.broker
            .partition_offsets("compacted", 0)
            .unwrap()
            .high_watermark,
        0
    );
}

/// Kafka's `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`: on a CreateTime
/// topic a batch holding a record outside `[now - before, now + after]` is refused whole with
/// INVALID_TIMESTAMP and the records at fault are named (KIP-467); LogAppendTime topics are not
/// checked (the broker stamps its own time).
#[tokio::test]
async fn records_outside_the_timestamp_window_are_refused_and_named() {
    let h = start().await;
    for (name, timestamp_type) in [("bounded", "CreateTime"), ("stamped", "LogAppendTime")] {
        h.broker
            .create_topic(
                broker_embedded::NewTopic::new(name, 1)
                    .config("message.timestamp.type", timestamp_type)
                    .config("message.timestamp.before.max.ms", "3600000")
                    .config("message.timestamp.after.max.ms", "3600000"),
            )
            .unwrap();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = 3_600_000;
    let batch_at = |timestamps: &[i64]| {
        let recs: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &t)| Record {
                offset: i as i64,
                timestamp: t,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: vec![],
            })
            .collect();
        Bytes::from(encode_batch(&BatchSpec::default(), &recs).unwrap())
    };
    let mut s = h.connect().await;
    let mut produce =
        async |name: &str, records: Bytes| -> produce_response::PartitionProduceResponse {
            let mut req = ProduceRequest::default();
            req.acks = 1;
            let mut td = produce_request::TopicProduceData::default();
            td.name = topic(name);
            let mut pd = produce_request::PartitionProduceData::default();
            pd.records = Some(records);
            td.partition_data = vec![pd];
            req.topic_data = vec![td];
            let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
            r.responses[0].partition_responses[0].clone()
        };
    let late_and_early = batch_at(&[now, now - 2 * hour, now + hour / 2, now + 2 * hour]);
    let p = produce("bounded", late_and_early.clone()).await;
    assert_eq!(
        p.error_code,
        kafka_protocol::ResponseError::InvalidTimestamp.code()
    );
    let at_fault: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
    assert_eq!(at_fault, vec![1, 3]);
    let message = p
        .error_message
        .as_deref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("Timestamp {}", now - 2 * hour))
            && message.contains("out of range"),
        "{message}"
    );
    assert_eq!(
        h.broker
            .partition_offsets("bounded", 0)
            .unwrap()
            .high_watermark,
        0,
        "nothing of the refused batch is written"
    );
    // Within the window: accepted.
    let p = produce("bounded", batch_at(&[now - hour / 2, now + 1_000])).await;
    assert_eq!(p.error_code, 0);
    // LogAppendTime: the broker's own time replaces the producer's, nothing is refused.
    let p = produce("stamped", late_and_early).await;
    assert_eq!(p.error_code, 0);
    assert_eq!(
        h.broker
            .partition_offsets("stamped", 0)
            .unwrap()
            .high_watermark,
        4
    );
}

/// KIP-74: Fetch's response-level `max_bytes` bounds the response even when the partition
/// limit is larger (librdkafka's fetch.max.bytes 1 MB with max.partition.fetch.bytes 20 MB);
/// only a first batch larger than the limit goes beyond it.
#[tokio::test]
async fn fetch_response_max_bytes_bounds_the_first_partition_too() {
    let h = start().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("big", 3))
        .unwrap();
    let value = vec![7u8; 300 * 1024];
    for p in 0..3 {
        for _ in 0..4 {
            h.broker
                .produce(
                    "big",
                    p,
                    &[broker_embedded::ProduceRecord::new("k", value.clone())],
                )
                .unwrap();
        }
    }
    let mut s = h.connect().await;
    for (response_max, want_max) in [(1_000_000, 1_000_000), (1, 400 * 1024)] {
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_bytes = response_max;
        let mut ft = fetch_request::FetchTopic::default();
        ft.topic = topic("big");
        ft.partitions = (0..3)
            .map(|p| {
                let mut fp = fetch_request::FetchPartition::default();
                fp.partition = p;
                fp.partition_max_bytes = 20_000_000;
                fp
            })
            .collect();
        req.topics = vec![ft];
        let r: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &req).await;
        let sizes: Vec<usize> = r.responses[0]
            .partitions
            .iter()
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .collect();
        let total: usize = sizes.iter().sum();
        assert!(total > 0, "at least the first batch: {sizes:?}");
        assert!(total <= want_max, "max_bytes {response_max}: {sizes:?}");
    }
}

/// KIP-345: when a new instance with the same `group.instance.id` takes over, the replaced
/// member's Heartbeat, SyncGroup and OffsetCommit get FENCED_INSTANCE_ID (librdkafka then
/// raises a fatal error instead of rejoining and fencing the new one in turn).
#[tokio::test]
async fn a_replaced_static_member_is_fenced() {
    use kafka_protocol::ResponseError;
    let h = start().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("st", 1))
        .unwrap();
    let group = GroupId(StrBytes::from_static_str("static"));
    let instance = Some(StrBytes::from_static_str("instance-1"));
    let join = |member: &str| {
        let mut req = JoinGroupRequest::default();
        req.group_id = group.clone();
        req.member_id = StrBytes::from_string(member.to_string());
        req.group_instance_id = instance.clone();
        req.session_timeout_ms = 10_000;
        req.rebalance_timeout_ms = 10_000;
        req.protocol_type = StrBytes::from_static_str("consumer");
        let mut p = join_group_request::JoinGroupRequestProtocol::default();
        p.name = StrBytes::from_static_str("range");
        p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        req.protocols = vec![p];
        req
    };
    let mut s = h.connect().await;
    let first: JoinGroupResponse = call(&mut s, ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(first.error_code, 0);
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group.clone();
    sync.generation_id = first.generation_id;
    sync.member_id = first.member_id.clone();
    sync.group_instance_id = instance.clone();
    let r: SyncGroupResponse = call(&mut s, ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(r.error_code, 0);
    // The same instance id again, with no member id: it replaces the first member.
    let second: JoinGroupResponse = call(&mut s, ApiKey::JoinGroup, 5, &join("")).await;
    assert_eq!(second.error_code, 0);
    assert_ne!(second.member_id, first.member_id);
    assert_eq!(second.generation_id, first.generation_id, "no rebalance");

    let mut hb = HeartbeatRequest::default();
    hb.group_id = group.clone();
    hb.generation_id = first.generation_id;
    hb.member_id = first.member_id.clone();
    hb.group_instance_id = instance.clone();
    let r: HeartbeatResponse = call(&mut s, ApiKey::Heartbeat, 3, &hb).await;
    assert_eq!(r.error_code, ResponseError::FencedInstanceId.code());
    let r: SyncGroupResponse = call(&mut s, ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(r.error_code, ResponseError::FencedInstanceId.code());
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = group.clone();
    commit.generation_id_or_member_epoch = first.generation_id;
    commit.member_id = first.member_id.clone();
    commit.group_instance_id = instance.clone();
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = topic("st");
    t.partitions = vec![offset_commit_request::OffsetCommitRequestPartition::default()];
    commit.topics = vec![t];
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 7, &commit).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::FencedInstanceId.code()
    );
    // The new member is unaffected.
    hb.member_id = second.member_id.clone();
    let r: HeartbeatResponse = call(&mut s, ApiKey::Heartbeat, 3, &hb).await;
    assert_eq!(r.error_code, 0);
}

/// As Kafka (KIP-429): a member of the current generation may commit while its group prepares
/// a rebalance (cooperative members keep consuming their partitions meanwhile).
#[tokio::test]
async fn commits_of_the_current_generation_pass_while_a_rebalance_is_prepared() {
    let h = start().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("c", 1))
        .unwrap();
    let group = GroupId(StrBytes::from_static_str("coop"));
    let mut s = h.connect().await;
    let mut join = JoinGroupRequest::default();
    join.group_id = group.clone();
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 10_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    let mut p = join_group_request::JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    join.protocols = vec![p];
    let first: JoinGroupResponse = call(&mut s, ApiKey::JoinGroup, 3, &join).await;
    assert_eq!(first.error_code, 0);
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group.clone();
    sync.generation_id = first.generation_id;
    sync.member_id = first.member_id.clone();
    let r: SyncGroupResponse = call(&mut s, ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(r.error_code, 0);
    // A second member arrives: the group prepares a rebalance.
    let second = join_in_background(&h, "coop", "consumer", &["c"]).await;
    let mut preparing = false;
    for _ in 0..100 {
        let mut d = DescribeGroupsRequest::default();
        d.groups = vec![group.clone()];
        let r: DescribeGroupsResponse = call(&mut s, ApiKey::DescribeGroups, 0, &d).await;
        preparing = r.groups[0].group_state.as_str() == "PreparingRebalance";
        if preparing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(preparing);
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = group.clone();
    commit.generation_id_or_member_epoch = first.generation_id;
    commit.member_id = first.member_id.clone();
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = topic("c");
    let mut part = offset_commit_request::OffsetCommitRequestPartition::default();
    part.committed_offset = 3;
    t.partitions = vec![part];
    commit.topics = vec![t];
    let r: OffsetCommitResponse = call(&mut s, ApiKey::OffsetCommit, 7, &commit).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let tp = broker_embedded::TopicPartition::new("c", 0);
    assert_eq!(h.broker.committed_offset("coop", &tp).unwrap().offset, 3);
    second.abort();
}

/// Every advertised version of the classic group APIs (JoinGroup 0–7, SyncGroup 0–5,
/// Heartbeat 0–4, DescribeGroups 0–5, ListGroups 0–4, LeaveGroup 0–4) gets a response that
/// decodes and does what it says, one group per JoinGroup version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_of_the_group_apis_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.cleaner_interval = None;
    c.group_initial_rebalance_delay = Duration::ZERO;
    let broker = Broker::open(c).unwrap();
    let server = KafkaServer::start(
        broker.clone(),
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let gid = |v: i16| GroupId(StrBytes::from_string(format!("versions-{v}")));
    for v in 0..=7i16 {
        let sync_v = v.min(5);
        let hb_v = v.min(4);
        let describe_v = v.min(5);
        let leave_v = v.min(4);
        let list_v = v.min(4);
        let mut join = JoinGroupRequest::default();
        join.group_id = gid(v);
        join.session_timeout_ms = 10_000;
        join.rebalance_timeout_ms = 10_000;
        join.protocol_type = StrBytes::from_static_str("consumer");
        let mut proto = join_group_request::JoinGroupRequestProtocol::default();
        proto.name = StrBytes::from_static_str("range");
        proto.metadata = Bytes::from_static(b"subscription");
        join.protocols = vec![proto];
        let mut r: JoinGroupResponse = call(&mut s, ApiKey::JoinGroup, v, &join).await;
        if v >= 4 {
            assert_eq!(
                r.error_code,
                kafka_protocol::ResponseError::MemberIdRequired.code(),
                "JoinGroup v{v} asks for a known member id"
            );
            join.member_id = r.member_id.clone();
            r = call(&mut s, ApiKey::JoinGroup, v, &join).await;
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert_eq!(r.generation_id, 1, "JoinGroup v{v}");
        assert_eq!(
            r.leader, r.member_id,
            "JoinGroup v{v}: the only member leads"
        );
        assert_eq!(r.members.len(), 1, "JoinGroup v{v}");
        assert_eq!(&r.members[0].metadata[..], b"subscription");
        let member = r.member_id.clone();

        let mut sync = SyncGroupRequest::default();
        sync.group_id = gid(v);
        sync.generation_id = 1;
        sync.member_id = member.clone();
        if sync_v >= 5 {
            sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
            sync.protocol_name = Some(StrBytes::from_static_str("range"));
        }
        let mut a = sync_group_request::SyncGroupRequestAssignment::default();
        a.member_id = member.clone();
        a.assignment = Bytes::from(format!("assignment-{v}"));
        sync.assignments = vec![a];
        let r: SyncGroupResponse = call(&mut s, ApiKey::SyncGroup, sync_v, &sync).await;
        assert_eq!(r.error_code, 0, "SyncGroup v{sync_v}");
        assert_eq!(
            r.assignment,
            Bytes::from(format!("assignment-{v}")),
            "SyncGroup v{sync_v}"
        );

        let mut hb = HeartbeatRequest::default();
        hb.group_id = gid(v);
        hb.generation_id = 1;
        hb.member_id = member.clone();
        let r: HeartbeatResponse = call(&mut s, ApiKey::Heartbeat, hb_v, &hb).await;
        assert_eq!(r.error_code, 0, "Heartbeat v{hb_v}");
        hb.generation_id = 7;
        let r: HeartbeatResponse = call(&mut s, ApiKey::Heartbeat, hb_v, &hb).await;
        assert_eq!(
            r.error_code,
            kafka_protocol::ResponseError::IllegalGeneration.code(),
            "Heartbeat v{hb_v} with a stale generation"
        );

        let mut d = DescribeGroupsRequest::default();
        d.groups = vec![gid(v)];
        let r: DescribeGroupsResponse = call(&mut s, ApiKey::DescribeGroups, describe_v, &d).await;
        assert_eq!(r.groups[0].error_code, 0, "DescribeGroups v{describe_v}");
        assert_eq!(
            r.groups[0].group_state.as_str(),
            "Stable",
            "DescribeGroups v{describe_v}"
        );
        assert_eq!(r.groups[0].members.len(), 1, "DescribeGroups v{describe_v}");
        assert_eq!(
            r.groups[0].members[0].member_assignment,
            Bytes::from(format!("assignment-{v}")),
            "DescribeGroups v{describe_v}"
        );

        let l = ListGroupsRequest::default();
        let r: ListGroupsResponse = call(&mut s, ApiKey::ListGroups, list_v, &l).await;
        assert_eq!(r.error_code, 0, "ListGroups v{list_v}");
        assert!(
            r.groups.iter().any(|g| g.group_id == gid(v)),
            "ListGroups v{list_v} lists the group"
        );

        let mut leave = LeaveGroupRequest::default();
        leave.group_id = gid(v);
        if leave_v >= 3 {
            let mut m = leave_group_request::MemberIdentity::default();
            m.member_id = member.clone();
            leave.members = vec![m];
        } else {
            leave.member_id = member.clone();
        }
        let r: LeaveGroupResponse = call(&mut s, ApiKey::LeaveGroup, leave_v, &leave).await;
        assert_eq!(r.error_code, 0, "LeaveGroup v{leave_v}");
        let d: DescribeGroupsResponse = call(&mut s, ApiKey::DescribeGroups, describe_v, &d).await;
        assert!(
            d.groups[0].members.is_empty(),
            "LeaveGroup v{leave_v} removed the member"
        );
    }
    drop(s);
    server.shutdown().await;
}

use kafka_protocol::ResponseError;

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

/// The transaction APIs over the wire: FindCoordinator for a transactional id,
/// InitProducerId (with INVALID_PRODUCER_EPOCH for old versions of a fenced producer),
/// AddPartitionsToTxn, KIP-890's refusal of a transactional produce to a partition not in the
/// transaction, ListTransactions, DescribeTransactions, DescribeProducers and EndTxn.
#[tokio::test]
async fn transaction_apis_over_the_wire() {
    let h = start().await;
    h.broker
        .create_topic(broker_embedded::NewTopic::new("tx", 2))
        .unwrap();
    let mut s = h.connect().await;
    let mut fc = FindCoordinatorRequest::default();
    fc.key = StrBytes::from_static_str("t1");
    fc.key_type = 1;
    let r: FindCoordinatorResponse = call(&mut s, ApiKey::FindCoordinator, 3, &fc).await;
    assert_eq!(
        (r.error_code, r.node_id.0, r.port),
        (0, 0, h.addr().port() as i32)
    );

    let mut init = InitProducerIdRequest::default();
    init.transactional_id = Some(txn_id("t1"));
    init.transaction_timeout_ms = 900_001;
    init.producer_id = ProducerId(-1);
    init.producer_epoch = -1;
    let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!(
        r.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );
    init.transaction_timeout_ms = 60_000;
    let first: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let pid = first.producer_id;

    let mut add = AddPartitionsToTxnRequest::default();
    add.v3_and_below_transactional_id = txn_id("t1");
    add.v3_and_below_producer_id = pid;
    add.v3_and_below_producer_epoch = 0;
    let mut t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default();
    t.name = topic("tx");
    t.partitions = vec![0, 7];
    add.v3_and_below_topics = vec![t];
    let r: AddPartitionsToTxnResponse = call(&mut s, ApiKey::AddPartitionsToTxn, 1, &add).await;
    let mut codes: Vec<(i32, i16)> = r.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| (p.partition_index, p.partition_error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            (0, ResponseError::OperationNotAttempted.code()),
            (7, ResponseError::UnknownTopicOrPartition.code())
        ]
    );
    add.v3_and_below_topics[0].partitions = vec![0];
    let r: AddPartitionsToTxnResponse = call(&mut s, ApiKey::AddPartitionsToTxn, 1, &add).await;
    assert_eq!(
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );

    // Transactional produce: partition 0 was added, partition 1 was not (KIP-890 part 1).
    for (partition, expected) in [(0, 0), (1, ResponseError::InvalidTxnState.code())] {
        let spec = BatchSpec {
            transactional: true,
            producer_id: pid.0,
            producer_epoch: 0,
            base_sequence: 0,
            ..BatchSpec::default()
        };
        let rec = Record {
            offset: 0,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: vec![],
        };
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 5_000;
        req.transactional_id = Some(txn_id("t1"));
        let mut td = produce_request::TopicProduceData::default();
        td.name = topic("tx");
        let mut pd = produce_request::PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(Bytes::from(encode_batch(&spec, &[rec]).unwrap()));
        td.partition_data = vec![pd];
        req.topic_data = vec![td];
        let r: ProduceResponse = call(&mut s, ApiKey::Produce, 9, &req).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, expected,
            "partition {partition}"
        );
    }

    let mut list = ListTransactionsRequest::default();
    list.state_filters = vec![
        StrBytes::from_static_str("Ongoing"),
        StrBytes::from_static_str("Bogus"),
    ];
    list.duration_filter = -1;
    let r: ListTransactionsResponse = call(&mut s, ApiKey::ListTransactions, 1, &list).await;
    assert_eq!(
        r.unknown_state_filters,
        [StrBytes::from_static_str("Bogus")]
    );
    assert_eq!(r.transaction_states.len(), 1);
    assert_eq!(r.transaction_states[0].transactional_id, txn_id("t1"));

    let mut describe = DescribeTransactionsRequest::default();
    describe.transactional_ids = vec![txn_id("t1"), txn_id("nope")];
    let r: DescribeTransactionsResponse =
        call(&mut s, ApiKey::DescribeTransactions, 0, &describe).await;
    let st = &r.transaction_states[0];
    assert_eq!(st.transaction_state.as_str(), "Ongoing");
    assert_eq!((st.producer_id, st.producer_epoch), (pid, 0));
    assert_eq!(st.topics[0].partitions, [0]);
    assert_eq!(
        r.transaction_states[1].error_code,
        ResponseError::TransactionalIdNotFound.code()
    );

    let mut dp = DescribeProducersRequest::default();
    let mut tr = describe_producers_request::TopicRequest::default();
    tr.name = topic("tx");
    tr.partition_indexes = vec![0];
    dp.topics = vec![tr];
    let r: DescribeProducersResponse = call(&mut s, ApiKey::DescribeProducers, 0, &dp).await;
    let producers = &r.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].producer_id, pid);
    assert_eq!(producers[0].current_txn_start_offset, 0);

    // A second InitProducerId aborts the open transaction (CONCURRENT_TRANSACTIONS), then bumps.
    let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!(r.error_code, ResponseError::ConcurrentTransactions.code());
    let r: InitProducerIdResponse = call(&mut s, ApiKey::InitProducerId, 4, &init).await;
    assert_eq!((r.error_code, r.producer_id, r.producer_epoch), (0, pid, 2));

    // The fenced epoch: INVALID_PRODUCER_EPOCH before EndTxn v2, PRODUCER_FENCED after.
    let mut end = EndTxnRequest::default();
    end.transactional_id = txn_id("t1");
    end.producer_id = pid;
    end.producer_epoch = 0;
    end.committed = true;
    let r: EndTxnResponse = call(&mut s, ApiKey::EndTxn, 1, &end).await;
    assert_eq!(r.error_code, ResponseError::InvalidProducerEpoch.code());
    let r: EndTxnResponse = call(&mut s, ApiKey::EndTxn, 3, &end).await;
    assert_eq!(r.error_code, ResponseError::ProducerFenced.code());
    // No transaction in progress for the current epoch.
    end.producer_epoch = 2;
    let r: EndTxnResponse = call(&mut s, ApiKey::EndTxn, 3, &end).await;
    assert_eq!(r.error_code, ResponseError::InvalidTxnState.code());
}

#[tokio::test]
async fn offset_for_leader_epoch_answers_from_the_epoch_cache() {
    let h = start().await;
    let mut s = h.connect().await;
    let name = "epochs";
    h.broker
        .create_topic(broker_embedded::NewTopic::new(name, 1))
        .unwrap();
    let log = h.broker.partition_log(name, 0).unwrap();
    let mut b = batch(3).to_vec();
    log.append(&mut b, broker_embedded::AppendOrigin::Client, 0)
        .unwrap();
    assert_eq!(
        broker_embedded::record::BatchHeader::parse(&b)
            .unwrap()
            .partition_leader_epoch,
        0,
        "single-node leader epoch"
    );

    let request = |parts: &[(&str, i32, i32, i32)]| {
        let mut r = OffsetForLeaderEpochRequest::default();
        r.replica_id = BrokerId(-1);
        for (t, partition, current, epoch) in parts {
            let mut tr = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
            tr.topic = topic(t);
            let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            p.partition = *partition;
            p.current_leader_epoch = *current;
            p.leader_epoch = *epoch;
            tr.partitions.push(p);
            r.topics.push(tr);
        }
        r
    };
    for version in [2i16, 3, 4] {
        let req = request(&[
            (name, 0, 0, 0),
            (name, 0, -1, 0),
            (name, 0, 1, 0),
            (name, 0, 0, 7),
            (name, 0, 0, -1),
            (name, 5, -1, 0),
            ("nope", 0, -1, 0),
        ]);
        let r: OffsetForLeaderEpochResponse =
            call(&mut s, ApiKey::OffsetForLeaderEpoch, version, &req).await;
        let got: Vec<(i16, i32, i64)> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(
            got,
            vec![
                (0, 0, 3),
                (0, 0, 3),
                (
                    kafka_protocol::ResponseError::UnknownLeaderEpoch.code(),
                    -1,
                    -1
                ),
                (0, -1, -1),
                (0, -1, -1),
                (unknown, -1, -1),
                (unknown, -1, -1),
            ],
            "v{version}"
        );
    }
    // A later leader epoch (as a replicated leader would write): epoch 0 ends where it began.
    let mut b = batch(2).to_vec();
    log.append_with_epoch(&mut b, broker_embedded::AppendOrigin::Client, 0, 4)
        .unwrap();
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(2), Some((0, 3)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 5)));

    // An empty partition's cache gets the single-node epoch on the first question.
    h.broker
        .create_topic(broker_embedded::NewTopic::new("empty", 1))
        .unwrap();
    let r: OffsetForLeaderEpochResponse = call(
        &mut s,
        ApiKey::OffsetForLeaderEpoch,
        2,
        &request(&[("empty", 0, 0, 0)]),
    )
    .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 0));

    // Advertised in ApiVersions.
    let v: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    let k = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::OffsetForLeaderEpoch as i16)
        .unwrap();
    assert_eq!((k.min_version, k.max_version), (2, 4));
}
