using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Records;

/// <summary>
/// Named tabular records over HTTP (<c>POST /v2/models/{m}/records</c>) against the real node and the real sample
/// models: the same outputs as V2 tensors of the same values, units converted, bad rows named by row and field while
/// the good rows run, and whole-request errors as problem+json naming the field.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class RecordsApiTests(NodeFixture node)
{
    internal static readonly string[] DiabetesFeatures = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"];

    /// <summary>The held-out diabetes rows: 10 raw features and the reference prediction.</summary>
    internal static (double[] Features, double Prediction)[] Diabetes() =>
        [.. File.ReadAllLines(Paths.Data("tabular", "diabetes_test.csv")).Skip(1).Where(l => l.Length > 0).Select(line =>
        {
            var v = line.Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            return (v[..10], v[11]);
        })];

    private async Task<(int Status, JsonNode? Body, string Type)> PostAsync(string path, string body, string type)
    {
        using var response = await node.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, type));
        return ((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response), response.Content.Headers.ContentType?.MediaType ?? "");
    }

    /// <summary>V2 outputs of the rows as one [n, width] tensor: the reference records must reproduce.</summary>
    private async Task<double[]> V2Async(string model, string output, double[][] rows)
    {
        var (status, body) = await node.PostJsonAsync($"/v2/models/{model}/infer", new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { rows.Length, rows[0].Length }, data = rows.SelectMany(r => r).ToArray() } },
            outputs = new[] { new { name = output } },
        });
        Assert.True(status == 200, body?.ToJsonString());
        return [.. body!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>())];
    }

    private static string Number(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    [Fact]
    public async Task Json_records_of_every_held_out_diabetes_row_give_the_v2_outputs_named_by_label()
    {
        var rows = Diabetes();
        var records = string.Join(',', rows.Select((r, i) => "{\"id\":\"p" + i + "\"," + string.Join(',', DiabetesFeatures.Select((f, k) => $"\"{f}\":{Number(r.Features[k])}")) + "}"));
        var (status, body, type) = await PostAsync("/v2/models/diabetes-linear/records", $"{{\"records\":[{records}]}}", "application/json");

        Assert.True(status == 200, body?.ToJsonString());
        Assert.Equal("application/json", type);
        Assert.Equal("diabetes-linear", body!["model_name"]!.GetValue<string>());
        Assert.Equal("1", body["model_version"]!.GetValue<string>());
        Assert.Equal(rows.Length, body["succeeded"]!.GetValue<int>());
        Assert.Equal(0, body["failed"]!.GetValue<int>());
        var v2 = await V2Async("diabetes-linear", "prediction", [.. rows.Select(r => r.Features)]);
        var results = body["results"]!.AsArray();
        Assert.Equal(rows.Length, results.Count);
        for (var i = 0; i < rows.Length; i++)
        {
            Assert.Equal(i, results[i]!["row"]!.GetValue<int>());
            Assert.Equal($"p{i}", results[i]!["id"]!.GetValue<string>());
            var progression = results[i]!["outputs"]!["prediction"]!["progression"]!.GetValue<double>();
            Assert.Equal(v2[i], progression, 1e-4);
            Assert.Equal(rows[i].Prediction, progression, 1e-2);
        }
    }

    [Fact]
    public async Task A_csv_of_the_breast_cancer_test_set_gives_the_v2_probabilities_by_class_name()
    {
        var rows = TestData.BreastCancer();
        // The file as it is: 30 named features plus label and reference columns, which are ignored.
        var csv = File.ReadAllText(Paths.Data("tabular", "breast_cancer_test.csv"));
        var (status, body, _) = await PostAsync("/v2/models/breast-cancer-logreg/versions/1/records", csv, "text/csv");

        Assert.True(status == 200, body?.ToJsonString());
        Assert.Equal(rows.Count, body!["succeeded"]!.GetValue<int>());
        var v2 = await V2Async("breast-cancer-logreg", "probabilities", [.. rows.Select(r => r.Features.Select(f => (double)f).ToArray())]);
        var results = body["results"]!.AsArray();
        for (var i = 0; i < rows.Count; i++)
        {
            var probabilities = results[i]!["outputs"]!["probabilities"]!;
            Assert.Equal(v2[2 * i], probabilities["malignant"]!.GetValue<double>(), 1e-6);
            Assert.Equal(v2[(2 * i) + 1], probabilities["benign"]!.GetValue<double>(), 1e-6);
            Assert.Equal(rows[i].PBenignLogreg, probabilities["benign"]!.GetValue<double>(), 1e-5);
            // Every output comes named: the logits too.
            Assert.NotNull(results[i]!["outputs"]!["logits"]!["benign"]);
        }
    }

    [Fact]
    public async Task Values_in_other_units_are_converted_to_the_features_units()
    {
        var row = Diabetes()[0].Features; // 61,1,25.8,90,280,195.4,55,5,4.9972,90
        var expected = (await V2Async("diabetes-linear", "prediction", [row]))[0];
        // Glucose and the three cholesterols in mmol/L, pressure in kPa, triglycerides (s5 = their ln) in mg/dL, age in months.
        var json = $$$"""
            {"records": [{"age": {"value": {{{Number(row[0] * 12)}}}, "unit": "mo"}, "sex": 1, "bmi": {"value": 25.8, "unit": "kg/m2"},
              "bp": {"value": {{{Number(row[3] * 0.133322387415)}}}, "unit": "kPa"},
              "s1": {"value": {{{Number(row[4] / 38.67)}}}, "unit": "mmol/L"}, "s2": {"value": {{{Number(row[5] / 38.67)}}}, "unit": "mmol/L"},
              "s3": {"value": {{{Number(row[6] / 38.67)}}}, "unit": "mmol/L"}, "s4": {"value": 5, "unit": "{ratio}"},
              "s5": {"value": {{{Number(Math.Exp(row[8]))}}}, "unit": "mg/dL"}, "s6": {"value": {{{Number(row[9] / 18.016)}}}, "unit": "mmol/L"}}]}
            """;
        var (status, body, _) = await PostAsync("/v2/models/diabetes-linear/records", json, "application/json");
        Assert.True(status == 200, body?.ToJsonString());
        Assert.Equal(expected, body!["results"]![0]!["outputs"]!["prediction"]!["progression"]!.GetValue<double>(), 1e-3);

        // CSV: a header gives a column's unit in brackets.
        var csv = $"age,sex,bmi,bp [mm[Hg]],s1,s2,s3,s4,s5,s6 [mmol/L]\n61,1,25.8,90,280,195.4,55,5,4.9972,{Number(row[9] / 18.016)}\n";
        (status, body, _) = await PostAsync("/v2/models/diabetes-linear/records", csv, "text/csv");
        Assert.True(status == 200, body?.ToJsonString());
        Assert.Equal(expected, body!["results"]![0]!["outputs"]!["prediction"]!["progression"]!.GetValue<double>(), 1e-3);
    }

    [Fact]
    public async Task Bad_rows_are_named_by_row_and_field_while_the_good_rows_run()
    {
        var good = "\"age\":61,\"sex\":1,\"bmi\":25.8,\"bp\":90,\"s1\":280,\"s2\":195.4,\"s3\":55,\"s4\":5,\"s5\":4.9972";
        var json = "{\"records\":[" +
            "{" + good + ",\"s6\":90}," +                                            // 0: good
            "{" + good + ",\"s6\":900.125}," +                                       // 1: out of range
            "{" + good + "}," +                                                      // 2: s6 missing
            "{" + good + ",\"s6\":\"ninety-7.5\"}," +                                // 3: not a number
            "{" + good + ",\"s6\":{\"value\":5,\"unit\":\"furlong/fortnight\"}}," +  // 4: a unit that does not convert
            "{" + good.Replace("\"sex\":1", "\"sex\":1.5", StringComparison.Ordinal) + ",\"s6\":90}," + // 5: not a coded value
            "\"a string\"," +                                                        // 6: not a record
            "{" + good + ",\"S6\":90,\"note\":\"ignored\"}" +                         // 7: good (case-insensitive name, unknown field ignored)
            "]}";
        var (status, body, _) = await PostAsync("/v2/models/diabetes-linear/records", json, "application/json");

        Assert.True(status == 200, body?.ToJsonString());
        Assert.Equal(2, body!["succeeded"]!.GetValue<int>());
        Assert.Equal(6, body["failed"]!.GetValue<int>());
        var results = body["results"]!.AsArray();
        var expected = (await V2Async("diabetes-linear", "prediction", [Diabetes()[0].Features]))[0];
        foreach (var ok in new[] { 0, 7 })
        {
            Assert.Null(results[ok]!["errors"]);
            Assert.Equal(expected, results[ok]!["outputs"]!["prediction"]!["progression"]!.GetValue<double>(), 1e-4);
        }
        void AssertError(int row, string field, string says)
        {
            var errors = results[row]!["errors"]!.AsArray();
            var error = Assert.Single(errors)!;
            Assert.Equal(field, error["field"]!.GetValue<string>());
            var message = error["message"]!.GetValue<string>();
            Assert.StartsWith($"records[{row}]: ", message, StringComparison.Ordinal);
            Assert.Contains(says, message, StringComparison.Ordinal);
            Assert.Null(results[row]!["outputs"]);
        }
        AssertError(1, "s6", "'s6' is out of range: diabetes-linear takes 43.5 to 155 mg/dL");
        AssertError(2, "s6", "'s6' is missing");
        AssertError(3, "s6", "'s6' is not a number");
        AssertError(4, "s6", "'s6': the unit given does not convert to mg/dL (units that do: mg/dL, mmol/L,");
        AssertError(5, "sex", "'sex' must be one of 1, 2");
        AssertError(6, "records[6]", "not an object");
        // The caller's values and unit text are never echoed.
        var text = body.ToJsonString();
        foreach (var echoed in new[] { "900.125", "ninety", "furlong", "a string" })
        {
            Assert.DoesNotContain(echoed, text, StringComparison.Ordinal);
        }

        // A CSV row that fails names its line.
        var csv = "id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6\nr1,61,1,25.8,90,280,195.4,55,5,4.9972,90\nr2,61,1,25.8,90,280,195.4,55,5,4.9972,\nr3,6100,1,25.8,90,280,195.4,55,5,4.9972,90\n";
        (status, body, _) = await PostAsync("/v2/models/diabetes-linear/records", csv, "text/csv");
        Assert.True(status == 200, body?.ToJsonString());
        results = body!["results"]!.AsArray();
        Assert.Equal("r1", results[0]!["id"]!.GetValue<string>());
        Assert.NotNull(results[0]!["outputs"]);
        Assert.Equal("CSV line 3: 's6' is missing", results[1]!["errors"]![0]!["message"]!.GetValue<string>());
        Assert.Equal("age", results[2]!["errors"]![0]!["field"]!.GetValue<string>());
        Assert.StartsWith("CSV line 4: 'age' is out of range", results[2]!["errors"]![0]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task When_no_record_can_run_the_answer_is_422_with_each_records_errors()
    {
        var (status, body, _) = await PostAsync("/v2/models/breast-cancer-logreg/records", """{"records":[{"mean radius":12}]}""", "application/json");
        Assert.Equal(422, status);
        Assert.Equal(0, body!["succeeded"]!.GetValue<int>());
        Assert.Equal(29, body["results"]![0]!["errors"]!.AsArray().Count); // every feature but the one given is missing
    }

    [Fact]
    public async Task A_request_that_is_bad_as_a_whole_is_problem_json_naming_the_field()
    {
        async Task AssertProblem(string path, string body, string type, int status, string field)
        {
            using var response = await node.Http.PostAsync(path, new StringContent(body, Encoding.UTF8, type));
            var json = await NodeFixture.ReadJsonAsync(response);
            Assert.True((int)response.StatusCode == status, $"{path} {body}: {(int)response.StatusCode} {json}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal(field, json!["field"]!.GetValue<string>());
            Assert.DoesNotContain("secret-value", json.ToJsonString(), StringComparison.Ordinal);
        }
        await AssertProblem("/v2/models/diabetes-linear/records", "{\"records\": [secret-value", "application/json", 400, "body");
        await AssertProblem("/v2/models/diabetes-linear/records", "{\"rows\": []}", "application/json", 400, "records");
        await AssertProblem("/v2/models/diabetes-linear/records", "{\"records\": []}", "application/json", 400, "records");
        await AssertProblem("/v2/models/diabetes-linear/records", "{\"records\": {\"age\": 1}}", "application/json", 400, "records");
        await AssertProblem("/v2/models/diabetes-linear/records", "age,sex\n", "text/csv", 400, "columns");
        await AssertProblem("/v2/models/diabetes-linear/records", "secret-value", "text/plain", 400, "content-type");
        await AssertProblem("/v2/models/no-such-model/records", "{\"records\": [{}]}", "application/json", 404, "model");
        await AssertProblem("/v2/models/diabetes-linear/versions/9/records", "{\"records\": [{}]}", "application/json", 404, "model");
        // An image model takes no named records.
        await AssertProblem("/v2/models/ct-mr-classifier/records", "{\"records\": [{}]}", "application/json", 400, "model");
    }
}
