namespace MedServe.Tests.Support;

/// <summary>
/// Every public endpoint and page, with paths that change nothing that exists when a body is ignored: the one list the
/// fuzz and leak tests send to (SecurityTests lists the same ones with the permission each needs).
/// </summary>
public static class PublicEndpoints
{
    public static readonly (string Method, string Path)[] All =
    [
        ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/metrics"), ("GET", "/signin"), ("POST", "/signin"),
        ("GET", "/v2"), ("GET", "/v2/models/diabetes-linear"), ("GET", "/v2/models/diabetes-linear/versions/1"),
        ("GET", "/v2/models/diabetes-linear/ready"), ("GET", "/v2/models/diabetes-linear/versions/1/ready"),
        ("POST", "/v2/models/diabetes-linear/infer"), ("POST", "/v2/models/diabetes-linear/versions/1/infer"),
        ("POST", "/v2/models/no-such-model/infer"), ("GET", "/api/models"), ("POST", "/api/models"),
        ("POST", "/api/models?deploy=true"), ("GET", "/api/models/diabetes-linear"),
        ("GET", "/api/models/diabetes-linear/versions/1"), ("DELETE", "/api/models/no-such-model/versions/1"),
        ("PUT", "/api/models/diabetes-linear/default"), ("PUT", "/api/models/no-such-model/default"),
        ("GET", "/api/deployments"), ("GET", "/api/deployments/diabetes-linear/1"),
        ("PUT", "/api/deployments/diabetes-linear/1"), ("PUT", "/api/deployments/no-such-model/1"),
        ("DELETE", "/api/deployments/no-such-model/1"), ("GET", "/api/silos"), ("GET", "/api/jobs"), ("POST", "/api/jobs"),
        ("POST", "/api/jobs?model=diabetes-linear"), ("GET", "/api/jobs/no-such-job"),
        ("POST", "/api/jobs/no-such-job/cancel"), ("DELETE", "/api/jobs/no-such-job"),
        ("GET", "/api/jobs/no-such-job/results"), ("GET", "/api/keys"), ("POST", "/api/keys"),
        ("DELETE", "/api/keys/000000000000"), ("GET", "/api/audit"), ("GET", "/api/audit/verify"),
        ("GET", "/openapi/management.json"), ("GET", "/api-reference"), ("GET", "/orleans/"), ("GET", "/"),
        ("GET", "/models/diabetes-linear/versions/1"), ("GET", "/cluster"), ("GET", "/latency"), ("GET", "/upload"),
        ("GET", "/try"), ("GET", "/jobs"), ("GET", "/keys"), ("POST", "/api/jobs?model=breast-cancer-logreg"),
        ("GET", "/api/admin/data-protection/keys"),
        ("POST", "/v2/models/diabetes-linear/records"), ("POST", "/v2/models/diabetes-linear/versions/1/records"),
        ("POST", "/v2/models/breast-cancer-logreg/records"), ("POST", "/v2/models/no-such-model/records"),
        ("POST", "/fhir/models/diabetes-linear/$predict"), ("POST", "/fhir/models/diabetes-linear/versions/1/$predict"),
        ("POST", "/fhir/models/breast-cancer-logreg/$predict"), ("POST", "/fhir/models/no-such-model/$predict"),
        ("POST", "/dicomweb/studies"), ("POST", "/dicomweb/studies/1.2.3"), ("GET", "/api/studies"), ("GET", "/api/studies/1.2.3"),
        ("POST", "/api/jobs?model=ct-mr-classifier"), ("GET", "/studies"),
    ];
}
