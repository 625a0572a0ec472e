using MedServe.Silo.Hosting;

// The embedded node: one silo serving the V2 API, the management API and the sample models.
var app = MedServeNode.Build(args);
app.Run();
