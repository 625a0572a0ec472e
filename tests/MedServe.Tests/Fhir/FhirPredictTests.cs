using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Hl7.Fhir.Validation;
using MedServe.Tests.Records;
using MedServe.Tests.Support;
using FhirModelInfo = Hl7.Fhir.Model.ModelInfo;
using Task = System.Threading.Tasks.Task;

namespace MedServe.Tests.Fhir;

/// <summary>
/// FHIR R4 <c>$predict</c> against the real node and models: LOINC-coded Observations in mixed units give the same value
/// as V2 for the same features; MedServe-coded Observations in a Parameters resource give a RiskAssessment per class;
/// every answer parses and validates with HL7's SDK; errors are OperationOutcomes naming the element.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class FhirPredictTests(NodeFixture node)
{
    private static readonly BaseFhirJsonDeserializer Parser = new(FhirModelInfo.ModelInspector, new DeserializerSettings());
    private static readonly BaseFhirJsonSerializer Serializer = new(FhirModelInfo.ModelInspector);

    private static readonly ResourceReference Subject = new("Patient/pat-1", "Test Patient");

    private static Observation Quantity(string system, string code, double value, string? unit) => new()
    {
        Status = ObservationStatus.Final,
        Code = new CodeableConcept(system, code),
        Subject = Subject,
        Value = unit is null ? new Quantity { Value = (decimal)value } : new Quantity((decimal)value, unit, "http://unitsofmeasure.org"),
    };

    /// <summary>A diabetes row as a Bundle: glucose and the cholesterols in mmol/L, triglycerides for s5, sex in MedServe's code system, a Patient and an unrelated vital sign.</summary>
    private static Bundle DiabetesBundle(double[] row)
    {
        var bundle = new Bundle { Type = Bundle.BundleType.Collection };
        bundle.Entry.Add(new Bundle.EntryComponent { Resource = new Patient { Id = "pat-1", Gender = AdministrativeGender.Female } });
        Observation[] observations =
        [
            Quantity("http://loinc.org", "30525-0", row[0], "a"),
            new Observation { Status = ObservationStatus.Final, Code = new CodeableConcept("urn:medserve:feature", "sex"), Subject = Subject, Value = new Integer((int)row[1]) },
            Quantity("http://loinc.org", "39156-5", row[2], "kg/m2"),
            Quantity("http://loinc.org", "8478-0", row[3], "mm[Hg]"),
            Quantity("http://loinc.org", "2093-3", row[4] / 38.67, "mmol/L"),
            Quantity("http://loinc.org", "2089-1", row[5], "mg/dL"),
            Quantity("http://loinc.org", "2085-9", row[6] / 38.67, "mmol/L"),
            Quantity("http://loinc.org", "9830-1", row[7], "{ratio}"),
            Quantity("http://loinc.org", "2571-8", Math.Exp(row[8]), "mg/dL"),
            Quantity("http://loinc.org", "2345-7", row[9] / 18.016, "mmol/L"),
            Quantity("http://loinc.org", "8867-4", 72, "/min"), // heart rate: no feature of this model, ignored
        ];
        foreach (var o in observations)
        {
            bundle.Entry.Add(new Bundle.EntryComponent { Resource = o });
        }
        return bundle;
    }

    private async Task<(int Status, Resource Body, string Type)> PredictAsync(string path, string body, string type = "application/fhir+json")
    {
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
        using var response = await node.Http.PostAsync(path, content);
        var text = await response.Content.ReadAsStringAsync();
        // Every answer, success or error, is FHIR JSON that HL7's SDK parses and validates.
        var resource = Parser.DeserializeResource(text);
        var problems = resource.Validate(FhirModelInfo.ModelInspector);
        Assert.True(problems.Count == 0, $"{path}: {string.Join("; ", problems.Select(p => p.Message))}\n{text}");
        return ((int)response.StatusCode, resource, response.Content.Headers.ContentType?.MediaType ?? "");
    }

    private static Quantity ValueOf(Bundle bundle, int entry) => (Quantity)((Observation)bundle.Entry[entry].Resource!).Value!;

    private static double Probability(RiskAssessment assessment, int k) => (double)((FhirDecimal)assessment.Prediction[k].Probability!).Value!.Value;

    private async Task<double[]> V2Async(string model, string output, double[] row)
    {
        var (status, body) = await node.PostJsonAsync($"/v2/models/{model}/infer", new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, row.Length }, data = row } },
            outputs = new[] { new { name = output } },
        });
        Assert.True(status == 200, body?.ToJsonString());
        return [.. body!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>())];
    }

    [Theory]
    [InlineData("/fhir/models/diabetes-linear/$predict")]
    [InlineData("/fhir/models/diabetes-linear/versions/1/$predict")]
    public async Task A_bundle_of_loinc_observations_in_mixed_units_answers_an_observation_with_the_v2_value(string path)
    {
        foreach (var (row, _) in RecordsApiTests.Diabetes().Take(5))
        {
            var (status, body, type) = await PredictAsync(path, Serializer.SerializeToString(DiabetesBundle(row)));

            Assert.True(status == 200, Serializer.SerializeToString(body));
            Assert.Equal("application/fhir+json", type);
            var observation = Assert.IsType<Observation>(body);
            Assert.Equal(ObservationStatus.Final, observation.Status);
            var value = Assert.IsType<Quantity>(observation.Value);
            Assert.Equal((await V2Async("diabetes-linear", "prediction", row))[0], (double)value.Value!.Value, 1e-3);
            Assert.Equal("progression", observation.Code!.Coding[0].Display);
            // The model and version in method; the subject as the input gave it.
            Assert.Equal("urn:medserve:model", observation.Method!.Coding[0].System);
            Assert.Equal("diabetes-linear:1", observation.Method!.Coding[0].Code);
            Assert.Equal("Patient/pat-1", observation.Subject!.Reference);
            Assert.Equal("Test Patient", observation.Subject!.Display);
        }
    }

    [Fact]
    public async Task Breast_cancer_observations_in_a_parameters_resource_answer_a_risk_assessment_per_class()
    {
        var manifest = File.ReadAllText(Path.Combine(Paths.Samples, "breast-cancer-logreg", "manifest.json"));
        var labels = System.Text.Json.Nodes.JsonNode.Parse(manifest)!["inputs"]![0]!["labels"]!.AsArray().Select(l => l!.GetValue<string>()).ToArray();
        foreach (var row in TestData.BreastCancer().Take(4))
        {
            var parameters = new Parameters();
            for (var k = 0; k < labels.Length; k++)
            {
                parameters.Parameter.Add(new Parameters.ParameterComponent
                {
                    Name = "observation",
                    Resource = new Observation
                    {
                        Status = ObservationStatus.Final,
                        Code = new CodeableConcept("urn:medserve:feature", labels[k]),
                        Subject = new ResourceReference { Reference = "Patient/bc-7", Display = "Jane Roe" },
                        Value = new Quantity { Value = decimal.Parse(row.Features[k].ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) },
                    },
                });
            }
            var (status, body, _) = await PredictAsync("/fhir/models/breast-cancer-logreg/$predict", Serializer.SerializeToString(parameters));

            Assert.True(status == 200, Serializer.SerializeToString(body));
            var assessment = Assert.IsType<RiskAssessment>(body);
            var v2 = await V2Async("breast-cancer-logreg", "probabilities", [.. row.Features.Select(f => (double)f)]);
            Assert.Equal(["malignant", "benign"], assessment.Prediction.Select(p => p.Outcome!.Text));
            Assert.Equal(["malignant", "benign"], assessment.Prediction.Select(p => p.Outcome!.Coding[0].Code));
            Assert.Equal(v2[0], Probability(assessment, 0), 1e-6);
            Assert.Equal(v2[1], Probability(assessment, 1), 1e-6);
            Assert.Equal(row.PBenignLogreg, Probability(assessment, 1), 1e-5);
            Assert.Equal("breast-cancer-logreg:1", assessment.Method!.Coding[0].Code);
            Assert.Equal("Patient/bc-7", assessment.Subject!.Reference);
            Assert.Equal("Jane Roe", assessment.Subject!.Display);
        }
    }

    [Fact]
    public async Task Errors_are_operation_outcomes_naming_the_element()
    {
        var row = RecordsApiTests.Diabetes()[0].Features;
        async Task AssertOutcome(string body, int status, string expression, string? says = null, string path = "/fhir/models/diabetes-linear/$predict", string type = "application/fhir+json")
        {
            var (got, resource, _) = await PredictAsync(path, body, type);
            var outcome = Assert.IsType<OperationOutcome>(resource);
            var text = Serializer.SerializeToString(outcome);
            Assert.True(got == status, $"{status} expected: {got} {text}");
            Assert.Contains(outcome.Issue, i => (expression.Length == 0 || i.Expression.Contains(expression)) && (says is null || (i.Diagnostics ?? "").Contains(says, StringComparison.Ordinal)));
            Assert.DoesNotContain("secret", text, StringComparison.Ordinal);
        }
        // entry[0] is the Patient; entry[10] is glucose (s6).
        var badUnit = DiabetesBundle(row);
        ValueOf(badUnit, 10).Code = "secret/L";
        await AssertOutcome(Serializer.SerializeToString(badUnit), 422, "Bundle.entry[10].resource.valueQuantity.code", "does not convert to mg/dL");

        var outOfRange = DiabetesBundle(row);
        ValueOf(outOfRange, 10).Value = 900;
        await AssertOutcome(Serializer.SerializeToString(outOfRange), 422, "Bundle.entry[10].resource.valueQuantity.value", "'s6' is out of range");

        var noUnit = DiabetesBundle(row);
        ValueOf(noUnit, 1).Code = null;
        ValueOf(noUnit, 1).System = null;
        await AssertOutcome(Serializer.SerializeToString(noUnit), 422, "Bundle.entry[1].resource.valueQuantity.code", "UCUM");

        var missing = DiabetesBundle(row);
        missing.Entry.RemoveAt(10);
        await AssertOutcome(Serializer.SerializeToString(missing), 422, "Bundle.entry", "no Observation of feature 's6' (code http://loinc.org|2345-7)");

        var twice = DiabetesBundle(row);
        twice.Entry.Add(new Bundle.EntryComponent { Resource = Quantity("http://loinc.org", "2345-7", 5, "mmol/L") });
        await AssertOutcome(Serializer.SerializeToString(twice), 422, "Bundle.entry[12].resource.code", "a second Observation of feature 's6'");

        var otherSubject = DiabetesBundle(row);
        ((Observation)otherSubject.Entry[3].Resource!).Subject = new ResourceReference("Patient/secret-other");
        await AssertOutcome(Serializer.SerializeToString(otherSubject), 422, "Bundle.entry[3].resource.subject");

        await AssertOutcome("""{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "secret-value"}}}]}""",
            400, "Bundle.entry[0].resource.value.value", "not valid FHIR R4 JSON");
        await AssertOutcome("""{"resourceType": "Bundle", "entry": [secret""", 400, "Bundle", "not valid JSON");
        await AssertOutcome("""{"resourceType": "Patient", "id": "secret-id"}""", 400, "Patient", "not a Patient");
        await AssertOutcome("""{"resourceType": "SecretThing"}""", 400, "", null);
        await AssertOutcome(Serializer.SerializeToString(DiabetesBundle(row)), 415, "Bundle", "application/fhir+json", type: "text/plain");
        await AssertOutcome(Serializer.SerializeToString(DiabetesBundle(row)), 404, "", "unknown model", path: "/fhir/models/no-such-model/$predict");
        // A RiskAssessment needs a subject: every feature given, none names one.
        var labels = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.Samples, "breast-cancer-logreg", "manifest.json")))!["inputs"]![0]!["labels"]!.AsArray().Select(l => l!.GetValue<string>()).ToArray();
        var features = TestData.BreastCancer()[0].Features;
        var anonymous = new Parameters();
        for (var k = 0; k < labels.Length; k++)
        {
            anonymous.Parameter.Add(new Parameters.ParameterComponent { Name = "observation", Resource = new Observation { Status = ObservationStatus.Final, Code = new CodeableConcept("urn:medserve:feature", labels[k]), Value = new Quantity { Value = (decimal)features[k] } } });
        }
        await AssertOutcome(Serializer.SerializeToString(anonymous), 422, "Observation.subject", "RiskAssessment.subject is required", path: "/fhir/models/breast-cancer-logreg/$predict");
        var noSubject = new Parameters();
        noSubject.Parameter.Add(new Parameters.ParameterComponent { Name = "observation", Resource = new Observation { Status = ObservationStatus.Final, Code = new CodeableConcept("urn:medserve:feature", "mean radius"), Value = new Quantity { Value = 12 } } });
        await AssertOutcome(Serializer.SerializeToString(noSubject), 422, "Parameters.parameter", "no Observation of feature 'mean texture'", path: "/fhir/models/breast-cancer-logreg/$predict");
    }
}
